"""Features page: the features CSV (path,label,f0,...) for download, with its size."""

import io

import pandas as pd
import streamlit as st

from fext.features import Artifacts, write_csv
from fext.ui.common import header, need_artifacts, need_model, workspace
from fext.workspace import Workspace

PREVIEW_ROWS = 20

header("Features", "One feature vector per image, from the encoder's bottleneck (L2-normalised): "
                   "download them for your own analysis.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)


@st.cache_data(max_entries=4, show_spinner="Writing CSV…")
def features_csv(root: str, name: str, version: str) -> bytes:
    """The CSV of one extraction version, written once per version."""
    buf = io.StringIO()
    write_csv(Artifacts.open(Workspace(root), name), buf)
    return buf.getvalue().encode()


dim = art.meta["dim"]
a, b, c, d = st.columns(4, border=True)
a.metric("Images", f"{len(art.items):,}")
b.metric("Vector size", dim)
c.metric("Index", art.meta["index"]["kind"])
d.metric("Skipped files", art.meta.get("skipped", 0))
st.download_button("Download features CSV", features_csv(str(ws.root), name, art.dir.name),
                   file_name=f"{name}-features.csv", mime="text/csv", type="primary",
                   icon=":material/download:")
whitened = art.meta.get("readout") == "whitened"
st.caption(f"Columns: `path,label,f0,…,f{dim - 1}`, one row per readable image; paths relative "
           f"to `{art.root}`. Built {art.meta['created']} from the model's current version. "
           + ("Vectors are whitened (PCA whitening fitted on the model's training images, the "
              "same for every folder and query) and L2-normalised." if whitened else
              "Vectors are the raw bottleneck, L2-normalised (the model predates whitening)."))
st.subheader("Preview")
preview = pd.DataFrame(art.features()[:PREVIEW_ROWS], columns=[f"f{i}" for i in range(dim)])
preview.insert(0, "label", art.items["label"].head(PREVIEW_ROWS).values)
preview.insert(0, "path", art.items["path"].head(PREVIEW_ROWS).values)
st.dataframe(preview, hide_index=True, width="stretch")
