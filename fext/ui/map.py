"""Map page: the collection as a 2-D UMAP scatter; select points to see their images."""

import plotly.express as px
import streamlit as st

from fext.projection import load_cached
from fext.ui.common import (
    header,
    image_grid,
    job_progress,
    need_artifacts,
    need_model,
    running_for,
    start_job,
    workspace,
)

MAX_SHOWN = 48

header("Map", "The whole collection in 2-D (UMAP of the features): similar images sit together. "
              "Hover a point for its file; click it, or draw a box or lasso, to see the images.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
coords = load_cached(art)
if coords is None:
    running = running_for(ws, name)
    if running is not None:
        st.info("The map is being computed; it appears here when it is ready.",
                icon=":material/hourglass_top:")
        job_progress(running.id)
        st.stop()
    st.info("The map of this extraction has not been computed yet (about half a minute for a few "
            "thousand images).")
    if st.button("Compute the map", type="primary", icon=":material/scatter_plot:"):
        start_job(ws, "project", name, ["--images", str(art.root)])
    st.stop()

# the folder's own ranking, and the score against the training collection where there is one
ANOMALY = {"combined": "anomaly (odd ones out)", "reference": "anomaly (unlike training)",
           "isolation": "anomaly (odd ones out)"}
shown = [k for k in art.score_kinds if k in ("reference", "combined")] or [art.score_kinds[0]]
df = art.items.assign(x=coords[:, 0], y=coords[:, 1], anomaly=art.scores(),
                      folder=[p.rsplit("/", 1)[0] if "/" in p else "." for p in art.items["path"]],
                      **{ANOMALY[k]: art.scores(k) for k in shown})
df["label"] = df["label"].replace("", "(none)")
left, right = st.columns([3, 1], vertical_alignment="bottom")
colour = left.radio("Colour by", ["label", "folder"] + [ANOMALY[k] for k in shown], horizontal=True)
right.caption(f"{len(df):,} images · {art.meta['dim']}-d features")
column = colour
fig = px.scatter(df, x="x", y="y", color=column, custom_data=["path"], height=620,
                 hover_name="path",
                 hover_data={"label": True, "anomaly": ":.4f", "x": False, "y": False,
                             "folder": False},
                 color_continuous_scale="Inferno")
fig.update_traces(marker=dict(size=7, opacity=0.85, line=dict(width=0.3, color="white")))
fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), xaxis_visible=False, yaxis_visible=False,
                  dragmode="lasso", legend_title_text=colour, plot_bgcolor="#fafafa")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                        key="map", width="stretch")
picked = [p["customdata"][0] for p in (event.selection.points if event else [])
          if p.get("customdata")]
st.subheader("Selected images")
if not picked:
    st.caption("Click a point, or draw a box or lasso around several, to see the images here "
               "(double-click the map to clear).")
else:
    rows = df[df["path"].isin(picked)].sort_values("anomaly", ascending=False).head(MAX_SHOWN)
    st.caption(f"{len(picked)} selected" + (f" (first {MAX_SHOWN} shown, most unusual first)"
                                            if len(picked) > MAX_SHOWN else ""))
    image_grid(rows, art.root, lambda r: f"{r.path} · {r.label} · anomaly {r.anomaly:.3f}")
