"""Search page: query by an uploaded image or one from the collection; results as a grid."""

import time

import pandas as pd
import streamlit as st

from fext.images import ImageError
from fext.ui.common import header, image_grid, need_artifacts, need_model, searcher, thumb, workspace

header("Search", "Find the images most similar to a query image (cosine similarity of their "
                 "features, 1.0 = identical).")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
engine = searcher(str(ws.root), name, art.dir.name, str(art.root))


def query_panel() -> tuple[str | bytes | None, str, int]:
    """The query (file path or uploaded bytes), its caption, and k."""
    source = st.radio("Query", ["Upload an image", "Pick from the collection"])
    query, label = None, ""
    if source == "Upload an image":
        up = st.file_uploader("Query image", help="Any image file: JPEG, PNG, WebP, GIF, BMP, TIFF")
        if up is not None:
            query, label = up.getvalue(), up.name
    else:
        paths = art.items["path"].tolist()
        pick = st.selectbox("Image", paths, index=0 if paths else None)
        if pick:
            query, label = str(art.root / pick), pick
    k = st.slider("Results (k)", 1, 50, 12)
    if query is not None:
        st.image(thumb(query, 256), caption=f"Query: {label}", width=220)
    return query, label, k


left, right = st.columns([1, 3], gap="large")
with left:
    query, label, k = query_panel()
with right:
    if query is None:
        st.info("Upload an image, or pick one from the collection, to see its nearest neighbours.",
                icon=":material/image_search:")
        st.stop()
    try:
        t0 = time.perf_counter()
        results = engine.search(query, k)
        elapsed = (time.perf_counter() - t0) * 1000
    except ImageError as e:
        st.error(f"That file cannot be used as a query image: {e}. Upload a JPEG, PNG, WebP, "
                 "GIF, BMP or TIFF image.")
        st.stop()
    st.caption(f"**{len(results)} results** in {elapsed:.0f} ms from {len(art.items):,} images "
               f"({art.meta['index']['kind']} index)")
    image_grid(pd.DataFrame(results), art.root,
               lambda r: f"#{r.rank} · {r.score:.3f} · {r.path}", columns=4)
