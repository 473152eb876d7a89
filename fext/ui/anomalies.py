"""Anomalies page: every image ranked by anomaly score, a histogram with a threshold, a CSV."""

import plotly.express as px
import streamlit as st

from fext.anomaly import ranking
from fext.ui.common import header, image_grid, need_artifacts, need_model, workspace

header("Anomalies", "Every image ranked by how unusual it is in its collection: the odd ones "
                    "out first. Move the threshold to see how many stand out.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)

kind = st.radio("Score", art.score_kinds, horizontal=True,
                help="reference (where the folder is not the training folder): unlike the "
                     "model's training collection, distance to its 5 nearest training images + "
                     "reconstruction error, each relative to its median on validation images; "
                     "combined: odd ones out of this folder, isolation + reconstruction error, "
                     "each relative to its median; isolation: mean distance to the 5 most "
                     "similar images of the folder; reconstruction: the autoencoder's "
                     "reconstruction error")
calibrated = art.threshold(kind)
if kind == "reference":
    st.info(f"**Unlike what the model learned**: {art.reference['text']}. The suggested "
            f"threshold's {calibrated['text']}.", icon=":material/verified:")
else:
    st.info(f"**Odd ones out of this folder** (`{art.root}`): each image against the others. "
            f"The suggested threshold flags {calibrated['text']}.", icon=":material/groups:")
if "reconstruction" not in art.score_kinds:
    st.caption("These features were extracted without the decoder pass (`--scores isolation`), "
               "so only isolation scores exist. For reconstruction scores run "
               f"`python -m fext extract --name {name}`.")
ranked = ranking(art.items, art.scores(kind))
scores = ranked["score"].to_numpy()
lo, hi = float(scores.min()), float(scores.max())
default = min(max(calibrated["value"], lo), hi)
threshold = st.slider("Threshold", lo, max(hi, lo + 1e-9), default, format="%.4f",
                      help="Images scoring at or above it count as anomalies. It starts at the "
                           "suggested threshold: " + calibrated["text"] + ".")
above = ranked[ranked["score"] >= threshold]

a, b, c, d = st.columns(4, border=True)
a.metric("Images", f"{len(ranked):,}")
b.metric("Above threshold", f"{len(above):,}")
c.metric("Share above", f"{len(above) / max(len(ranked), 1):.1%}")
d.metric("Highest score", f"{hi:.4f}")
fig = px.histogram(ranked, x="score", nbins=60, height=260, color_discrete_sequence=["#2f6fdf"])
fig.add_vline(x=threshold, line_dash="dash", line_color="crimson",
              annotation_text=f"threshold · {len(above)} above", annotation_position="top left")
fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"{kind} score",
                  yaxis_title="images", bargap=0.05)
st.plotly_chart(fig, width="stretch")

st.subheader("Most unusual")
top = st.slider("Show", 6, 60, 18, step=6)
image_grid(ranked.head(top), art.root, lambda r: f"#{r.rank} · {r.score:.3f} · {r.path}")

st.subheader("Full ranking")
st.download_button("Download ranking CSV", ranked[["rank", "path", "label", "score"]].to_csv(index=False),
                   file_name=f"{name}-anomalies-{kind}.csv", mime="text/csv",
                   icon=":material/download:")
st.dataframe(ranked[["rank", "path", "label", "split", "score"]], hide_index=True, width="stretch",
             height=320, column_config={"score": st.column_config.NumberColumn(format="%.4f")})
