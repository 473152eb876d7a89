"""Features page: the features CSV (path,label,f0,...) for download, with its size."""

import io

import streamlit as st

from fext.features import write_csv
from fext.ui.common import header, need_artifacts, need_model, workspace

header("Features", "One feature vector per image, from the encoder's bottleneck (L2-normalised).")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)


@st.cache_data(max_entries=4, show_spinner="Writing CSV…")
def features_csv(root: str, name: str, version: str) -> bytes:
    from fext.features import Artifacts
    from fext.workspace import Workspace
    buf = io.StringIO()
    write_csv(Artifacts.open(Workspace(root), name), buf)
    return buf.getvalue().encode()


a, b, c, d = st.columns(4)
a.metric("Images", f"{len(art.items):,}")
b.metric("Vector size", art.meta["dim"])
c.metric("Index", art.meta["index"]["kind"])
d.metric("Skipped files", art.meta.get("skipped", 0))
st.download_button("Download features CSV", features_csv(str(ws.root), name, art.dir.name),
                   file_name=f"{name}-features.csv", mime="text/csv", type="primary")
st.caption(f"Columns: `path,label,f0,…,f{art.meta['dim'] - 1}`; paths relative to "
           f"`{art.root}`. Built {art.meta['created']} from the model's current version.")
import pandas as pd
preview = pd.DataFrame(art.features()[:20], columns=[f"f{i}" for i in range(art.meta["dim"])])
preview.insert(0, "label", art.items["label"].head(20).values)
preview.insert(0, "path", art.items["path"].head(20).values)
st.dataframe(preview, hide_index=True, width="stretch")
