"""Map page: the collection as a 2-D UMAP scatter; select points to see their images."""

import numpy as np
import plotly.express as px
import streamlit as st

from fext import jobs
from fext.projection import load_cached
from fext.ui.common import (header, image_grid, job_progress, need_artifacts, need_model,
                            start_job, workspace)

header("Map", "The whole collection in 2-D (UMAP of the features): similar images sit together.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
coords = load_cached(art)
if coords is None:
    running = jobs.active(ws, name)
    if running is not None:
        job_progress(running.id)
        st.stop()
    st.info("The map of this extraction has not been computed yet (about half a minute for a few "
            "thousand images).")
    if st.button("Compute the map", type="primary"):
        start_job(ws, "project", name, [])
    st.stop()

df = art.items.assign(x=coords[:, 0], y=coords[:, 1], anomaly=art.scores(),
                      folder=[p.rsplit("/", 1)[0] if "/" in p else "." for p in art.items["path"]])
colour = st.radio("Colour by", ["label", "folder", "anomaly score"], horizontal=True)
column = {"label": "label", "folder": "folder", "anomaly score": "anomaly"}[colour]
fig = px.scatter(df, x="x", y="y", color=column, custom_data=["path"], height=620,
                 hover_data={"path": True, "label": True, "anomaly": ":.4f", "x": False, "y": False},
                 color_continuous_scale="Inferno")
fig.update_traces(marker=dict(size=6, opacity=0.8))
fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), xaxis_visible=False, yaxis_visible=False,
                  dragmode="lasso", legend_title_text=colour)
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                        key="map", width="stretch")
picked = [p["customdata"][0] for p in (event.selection.points if event else [])
          if p.get("customdata")]
st.subheader("Selected images")
if not picked:
    st.caption("Click a point, or draw a box or lasso around several, to see the images here.")
else:
    rows = df[df["path"].isin(picked)].head(48)
    st.caption(f"{len(picked)} selected" + (" (first 48 shown)" if len(picked) > 48 else ""))
    image_grid(rows, art.root, lambda r: f"{r.path}\nanomaly {r.anomaly:.4f}")
