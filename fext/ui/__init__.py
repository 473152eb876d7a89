"""Streamlit pages: each reads artefacts, starts jobs and draws; none does heavy work itself."""
