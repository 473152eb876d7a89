"""FEXT in the browser: `streamlit run app.py` (or `make app`).

The Streamlit server with FEXT's own routes beside it (fext/ui/server.py: map points,
thumbnails, CSV downloads); the pages start from fext/ui/main.py. Loopback only by default;
opened to a network, every request needs the key (fext/ui/access.py).
"""

import streamlit as st
import streamlit.net_util
from starlette.middleware import Middleware

from fext.demo import start_preparing
from fext.ui.access import RequireKey
from fext.ui.server import ROUTES
from fext.workspace import Workspace

# An offline tool never asks the internet for its own address: on a wildcard address Streamlit
# would ask checkip.amazonaws.com at start-up and at every websocket origin check that misses.
streamlit.net_util._external_ip = ""

# the demo is prepared from start-up (a background job), not from the first page view
start_preparing(Workspace())

app = st.App("fext/ui/main.py", routes=ROUTES, middleware=[Middleware(RequireKey)])
