"""Features page: the features CSV (path,label,f0,...) for download, and a preview."""

import pandas as pd
import streamlit as st

from fext.ui import server
from fext.ui.common import header, need_artifacts, need_model, workspace

PREVIEW_ROWS = 20

header("Features", "One feature vector per image, from the encoder's bottleneck (L2-normalised): "
                   "download them for your own analysis.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)


dim = art.meta["dim"]
a, b, c, d = st.columns(4, border=True)
a.metric("Images", f"{len(art.items):,}")
b.metric("Vector size", dim)
c.metric("Index", art.meta["index"]["kind"])
d.metric("Skipped files", art.meta.get("skipped", 0))
# written to a file once per extraction and streamed from it, never held in memory
st.link_button("Download features CSV", f"{server.base(name, art.dir.name)}/features.csv",
               type="primary", icon=":material/download:")
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
