"""FEXT in the browser: `streamlit run app.py`. Navigation only; each page lives in fext/ui/."""

import streamlit as st

st.set_page_config(page_title="FEXT · image features", page_icon=":material/image_search:",
                   layout="wide")

PAGES = {
    "Data": [
        st.Page("fext/ui/collection.py", title="Collection", icon=":material/photo_library:",
                default=True),
        st.Page("fext/ui/train.py", title="Train", icon=":material/model_training:"),
    ],
    "Explore": [
        st.Page("fext/ui/reconstruction.py", title="Reconstruction", icon=":material/compare:"),
        st.Page("fext/ui/map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("fext/ui/search.py", title="Search", icon=":material/image_search:"),
        st.Page("fext/ui/anomalies.py", title="Anomalies", icon=":material/report:"),
        st.Page("fext/ui/duplicates.py", title="Duplicates", icon=":material/content_copy:"),
    ],
    "Learn": [
        st.Page("fext/ui/classifier.py", title="Classifier", icon=":material/category:"),
    ],
    "Export": [
        st.Page("fext/ui/features.py", title="Features", icon=":material/download:"),
    ],
}
st.navigation(PAGES).run()
