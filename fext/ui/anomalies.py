"""Anomalies page: every image ranked by anomaly score, a histogram with a threshold, a CSV."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fext.anomaly import SCORE_HELP, ranking
from fext.ui import server
from fext.ui.common import header, image_grid, need_artifacts, need_model, paged, workspace
from fext.ui.served import extraction

BINS = 60

header("Anomalies", "Every image ranked by how unusual it is in its collection: the odd ones "
                    "out first. Move the threshold to see how many stand out.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)

kind = st.radio("Score", art.score_kinds, horizontal=True,
                help=SCORE_HELP)
calibrated = art.threshold(kind)
if kind == "reference":
    st.info(f"**Unlike what the model learned**: {art.reference['text']}. The suggested "
            f"threshold's {calibrated['text']}.", icon=":material/verified:")
else:
    how = (" The score is the share of the folder an image is odder than, by isolation or by "
           "reconstruction error, whichever is higher." if kind == "combined" else "")
    st.info(f"**Odd ones out of this folder** (`{art.root}`): each image against the others.{how} "
            f"The suggested threshold flags {calibrated['text']}.", icon=":material/groups:")
if "reconstruction" not in art.score_kinds:
    st.caption("These features were extracted without the decoder pass (`--scores isolation`), "
               "so only isolation scores exist. For reconstruction scores run "
               f"`python -m fext extract --name {name}`.")
served = extraction(name, art.dir.name)
scores = served.memo(("scores", kind), lambda: art.scores(kind))
# the order only: a million-row ranking table is never built, a page of it is
order = served.memo(("order", kind), lambda: np.argsort(-scores, kind="stable"))
lo, hi = float(scores.min()), float(scores.max())
default = min(max(calibrated["value"], lo), hi)
threshold = st.slider("Threshold", lo, max(hi, lo + 1e-9), default, format="%.4f",
                      help="Images scoring at or above it count as anomalies. It starts at the "
                           "suggested threshold: " + calibrated["text"] + ".")
n_above = int((scores >= threshold).sum())

a, b, c, d = st.columns(4, border=True)
a.metric("Images", f"{len(scores):,}")
b.metric("Above threshold", f"{n_above:,}")
c.metric("Share above", f"{n_above / max(len(scores), 1):.1%}")
d.metric("Highest score", f"{hi:.4f}")
# binned here: the browser gets BINS bars, not a million scores
counts, edges = served.memo(("hist", kind), lambda: np.histogram(scores, BINS))
fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges) * 0.95,
                       marker_color="#2f6fdf", hovertemplate="%{x:.4f}: %{y} images<extra></extra>"))
fig.add_vline(x=threshold, line_dash="dash", line_color="crimson")
fig.add_annotation(x=threshold, y=1, yref="paper", yanchor="bottom", showarrow=False,
                   text=f"threshold · {n_above:,} above", font_color="crimson")  # above the bars
fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"{kind} score",
                  yaxis_title="images", height=260)
st.plotly_chart(fig, width="stretch")


def ranked(rows: np.ndarray):
    """Rows of the ranking at positions `rows` (0 = most unusual)."""
    ids = order[rows]
    return ranking(art.items.iloc[ids], scores[ids]).assign(rank=rows + 1)


st.subheader("Most unusual")
top = st.slider("Show", 6, 60, 18, step=6)
image_grid(ranked(np.arange(min(top, len(scores)))), art.root,
           lambda r: f"#{r.rank} · {r.score:.3f} · {r.path}")

st.subheader("Full ranking")
st.link_button("Download ranking CSV", f"{server.base(name, art.dir.name)}/ranking/{kind}.csv",
               icon=":material/download:")
paged(len(scores), lambda rows: ranked(rows)[["rank", "path", "label", "split", "score"]],
      key=f"ranking-{kind}", column_config={"score": st.column_config.NumberColumn(format="%.4f")})
