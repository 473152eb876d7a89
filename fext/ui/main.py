"""The app's script: page set-up and navigation only; each page lives beside it in fext/ui/."""

from pathlib import Path

import streamlit as st

from fext.ui.common import release_freed_memory

# A file served by the app itself: a material icon or emoji favicon is fetched from gstatic.com
FAVICON = Path(__file__).parent / "static" / "favicon.png"

st.set_page_config(page_title="FEXT · image features", page_icon=FAVICON, layout="wide")

PAGES = {
    "Data": [
        st.Page("collection.py", title="Collection", icon=":material/photo_library:",
                default=True),
        st.Page("train.py", title="Train", icon=":material/model_training:"),
    ],
    "Explore": [
        st.Page("reconstruction.py", title="Reconstruction", icon=":material/compare:"),
        st.Page("map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("search.py", title="Search", icon=":material/image_search:"),
        st.Page("anomalies.py", title="Anomalies", icon=":material/report:"),
        st.Page("duplicates.py", title="Duplicates", icon=":material/content_copy:"),
    ],
    "Learn": [
        st.Page("classifier.py", title="Classifier", icon=":material/category:"),
    ],
    "Export": [
        st.Page("features.py", title="Features", icon=":material/download:"),
    ],
}
try:
    st.navigation(PAGES).run()
finally:  # also after st.rerun() and st.stop(), which end a run by raising
    release_freed_memory()
