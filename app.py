"""FEXT in the browser: `streamlit run app.py` (or `make app`).

The Streamlit server with FEXT's own routes beside it (fext/ui/server.py: map points,
thumbnails, CSV downloads); the pages start from fext/ui/main.py. Loopback only by default;
opened to a network, every request needs the key (fext/ui/access.py).
"""

import streamlit as st
from starlette.middleware import Middleware

from fext.ui.access import RequireKey
from fext.ui.server import ROUTES

app = st.App("fext/ui/main.py", routes=ROUTES, middleware=[Middleware(RequireKey)])
