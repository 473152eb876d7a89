"""Search page: query by an uploaded image or one from the collection; results as a grid."""

import time

import pandas as pd
import streamlit as st

from fext.errors import ImageError
from fext.search import VERIFY
from fext.ui.common import header, image_grid, need_artifacts, need_model, searcher, thumb, workspace

header("Search", "Find the images most similar to a query image (cosine similarity of their "
                 "features, 1.0 = identical). Results whose pixels show the query's own picture "
                 "(an identical or edited copy) come first, marked *same picture*.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
engine = searcher(str(ws.root), name, art.dir.name, str(art.root))


SOURCES = ["Upload an image", "Pick from the collection"]
MATCHES = 200  # paths offered at a time: a million would not fit in a select box


def matching(text: str) -> list[str]:
    """The first MATCHES paths containing `text` (case-insensitive); exact matches first."""
    paths = art.items["path"]
    if not text:
        return paths.head(MATCHES).tolist()
    exact = paths[paths == text]
    found = paths[paths.str.contains(text, case=False, regex=False)].head(MATCHES)
    return list(dict.fromkeys(exact.tolist() + found.tolist()))[:MATCHES]


def query_panel() -> tuple[str | bytes | None, str, int]:
    """The query (file path or uploaded bytes), its caption, and k."""
    preset = st.session_state.pop("search_query", None)  # "search similar" on the Map page
    if preset is not None:
        st.session_state["search_source"], st.session_state["search_filter"] = SOURCES[1], preset
    source = st.radio("Query", SOURCES, key="search_source")
    query, label = None, ""
    if source == SOURCES[0]:
        up = st.file_uploader("Query image", help="Any image file: JPEG, PNG, WebP, GIF, BMP, TIFF")
        if up is not None:
            query, label = up.getvalue(), up.name
    else:
        text = st.text_input("File name contains", key="search_filter",
                             placeholder="part of a path, e.g. 2024/beach")
        matches = matching(text)
        shown = f"the first {MATCHES}" if len(matches) == MATCHES else f"{len(matches)}"
        pick = st.selectbox(f"Image ({shown} matching)" if text else "Image", matches,
                            index=0 if len(matches) else None)
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
    same = sum(r["same_picture"] for r in results)
    st.caption(f"**{len(results)} results** in {elapsed:.0f} ms from {len(art.items):,} images "
               f"({art.meta['index']['kind']} index); "
               + (f"**{same} {'shows' if same == 1 else 'show'} the query's own picture** "
                  "(the same file, or aligned pixels that agree), first"
                  if same else f"none of the first {VERIFY} shows the query's own picture "
                               "(an identical or edited copy): these are the most similar images"))
    image_grid(pd.DataFrame(results), art.root,
               lambda r: f"#{r.rank} · {r.score:.3f} · "
                         f"{'same picture · ' if r.same_picture else ''}{r.path}", columns=4)
