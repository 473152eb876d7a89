"""FEXT in the browser: `streamlit run app.py` (or `make app`).

The Streamlit server with FEXT's own routes beside it (fext/ui/server.py: map points,
thumbnails, CSV downloads); the pages start from fext/ui/main.py.
"""

import streamlit as st

from fext.ui.server import ROUTES

app = st.App("fext/ui/main.py", routes=ROUTES)
