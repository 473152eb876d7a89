"""FEXT in the browser: `streamlit run app.py`. Navigation only; each page lives in fext/ui/."""

import streamlit as st

st.set_page_config(page_title="FEXT · image features", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("fext/ui/collection.py", title="Collection", icon="🗂️", default=True),
    st.Page("fext/ui/train.py", title="Train", icon="🏋️"),
    st.Page("fext/ui/reconstruction.py", title="Reconstruction", icon="🖼️"),
    st.Page("fext/ui/map.py", title="Map", icon="🗺️"),
    st.Page("fext/ui/search.py", title="Search", icon="🔎"),
    st.Page("fext/ui/anomalies.py", title="Anomalies", icon="🚩"),
    st.Page("fext/ui/features.py", title="Features", icon="📥"),
]
st.navigation(PAGES).run()
