"""Search page: query by an uploaded image or one from the collection; results as a grid."""

import time

import streamlit as st

from fext.images import ImageError
from fext.ui.common import header, image_grid, need_artifacts, need_model, searcher, thumb, workspace

header("Search", "Find the images most similar to a query image (cosine similarity of features).")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
engine = searcher(str(ws.root), name, art.dir.name)

left, right = st.columns([1, 3])
with left:
    source = st.radio("Query", ["Upload an image", "Pick from the collection"], horizontal=False)
    query, label = None, ""
    if source == "Upload an image":
        up = st.file_uploader("Query image", type=None, help="Any image file: JPEG, PNG, WebP, …")
        if up is not None:
            query, label = up.getvalue(), up.name
    else:
        paths = art.items["path"].tolist()
        pick = st.selectbox("Image", paths, index=0 if paths else None)
        if pick:
            query, label = str(art.root / pick), pick
    k = st.slider("Results (k)", 1, 50, 12)
    if query is not None:
        st.image(thumb(query), caption=label, width=200)  # a grey tile if it cannot be read

with right:
    if query is None:
        st.info("Upload an image or pick one from the collection to see its nearest neighbours.")
        st.stop()
    try:
        t0 = time.perf_counter()
        results = engine.search(query, k)
        elapsed = (time.perf_counter() - t0) * 1000
    except ImageError as e:
        st.error(f"That file cannot be used as a query image: {e}. Upload a JPEG, PNG, WebP, "
                 "GIF, BMP or TIFF image.")
        st.stop()
    st.caption(f"{len(results)} results in {elapsed:.0f} ms from {len(art.items)} images")
    import pandas as pd
    df = pd.DataFrame(results)
    image_grid(df, art.root, lambda r: f"#{r.rank} · {r.score:.3f}\n{r.path}", columns=4)
