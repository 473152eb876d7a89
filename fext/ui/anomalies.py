"""Anomalies page: every image ranked by anomaly score, a histogram with a threshold, a CSV, and
a panel per image: where it is unusual (its anomaly map), its reconstruction, what its score is
made of, its nearest normal images."""

import base64

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fext import maps, registry
from fext.anomaly import FOLDER_PARTS, SCORE_HELP, ReferenceStats, ranking, score_parts
from fext.errors import StaleError
from fext.ui import server
from fext.ui.common import header, need_artifacts, need_model, paged, thumb, workspace
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
    how = (" The score is the share of the folder with less evidence of being odd, the evidence "
           "of the two of isolation, reconstruction error and appearance that find the image "
           "oddest (open an image to see each)." if kind == "combined" else "")
    st.info(f"**Odd ones out of this folder** (`{art.root}`): each image against the others.{how} "
            f"The suggested threshold flags {calibrated['text']}.", icon=":material/groups:")
if "reconstruction" not in art.score_kinds:
    st.caption("These features were extracted without the decoder pass (`--scores isolation`), "
               "so only isolation and appearance scores exist. For reconstruction scores and "
               "their combination run "
               f"`python -m fext extract --name {name}`.")
elif outdated := art.outdated_ranking(kind, name):
    st.caption(outdated[0].upper() + outdated[1:] + ".")
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
INSPECTED = f"inspect:{name}:{art.dir.name}:{kind}"  # the image whose panel is open


def inspect(i: int | None) -> None:
    st.session_state[INSPECTED] = i


def inspect_rank() -> None:
    rank = st.session_state.get(f"{INSPECTED}:rank")
    if rank:
        inspect(int(order[min(int(rank), len(order)) - 1]))


def grid(rows, columns: int = 6) -> None:
    """The most unusual images, each with a button that opens its panel."""
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), columns):
        for col, row in zip(st.columns(columns), records[start:start + columns]):
            with col:
                st.image(thumb(str(art.root / row.path)), width="stretch",
                         caption=f"#{row.rank} · {row.score:.3f} · {row.path}")
                st.button("Inspect", key=f"inspect-{row.id}", on_click=inspect, args=(row.id,),
                          icon=":material/zoom_in:", width="stretch")


def picture(html_src: str, alt: str) -> str:
    return (f'<img src="{html_src}" alt="{alt}" style="width:100%;height:auto;display:block;'
            'border-radius:4px;background:#f4f4f4">')


def panel(i: int) -> None:
    """One image of the ranking, opened: the image, its reconstruction, the map of where it is
    unusual over it, what its score is made of, and its nearest normal images. The map and the
    reconstruction come from the app's routes (computed there on demand, kept in a bounded
    cache): this page never runs the model."""
    row = art.items.iloc[i]
    rank = int(np.flatnonzero(order == i)[0]) + 1
    base = server.base(name, art.dir.name)
    record = registry.open_record(ws, name)
    with st.container(border=True, key="anomaly-panel"):
        head, shut = st.columns([6, 1], vertical_alignment="center")
        head.markdown(f"**#{rank} · `{row['path']}`** · {kind} score {scores[i]:.4f}, "
                      + ("above" if scores[i] >= threshold else "below") + " the threshold")
        shut.button("Close", on_click=inspect, args=(None,), icon=":material/close:",
                    width="stretch")
        opacity = st.slider("Map opacity", 0.0, 1.0, 0.6, 0.05, key="anomaly-map-opacity")
        image = "data:image/png;base64," + base64.b64encode(thumb(str(art.root / row["path"]),
                                                                  320)).decode()
        one, two, three = st.columns(3)
        with one:
            st.markdown("**Image**")
            st.html(picture(image, "the image"))
        with two:
            st.markdown("**Reconstruction**")
            st.html(picture(f"{base}/reconstruction/{i}", "its reconstruction"))
            st.caption("at the image's own brightness and contrast, as its reconstruction "
                       "error reads it")
        with three:
            st.markdown("**Where it is unusual**")
            st.html(f'<div style="position:relative">{picture(image, "the image")}'
                    f'<img src="{base}/anomaly-map/{i}" alt="its anomaly map" class="fext-anomaly-map" '
                    'style="position:absolute;left:0;top:0;width:100%;height:100%;'
                    f'opacity:{opacity:.2f}"></div>')
        fitted = record.extras.get("maps", {}).get("fitted", "its normal images")
        st.caption("The map: " + (maps.meaning(maps.METHOD, fitted) + ". Transparent where the "
                                  "image is as normal images are; colour from their median, red "
                                  "past what 1 in 1,000 of their pixels reaches."
                                  if maps.kept(record) else
                                  "this model was trained before anomaly maps: the first map "
                                  "computes their statistics from its training images (once, "
                                  "then kept with the model), or shows the raw reconstruction "
                                  "residual where those images are no longer scanned."))
        parts(i)
        nearest(i)


def parts(i: int) -> None:
    """What the score is made of, each part with its share."""
    values = {k: float(all_scores(k)[i]) for k in (*FOLDER_PARTS, "reference")
              if k in art.score_kinds}
    ref = registry.open_record(ws, name).extras.get("reference")
    stats = ReferenceStats.from_dict(ref) if ref and kind == "reference" else None
    if stats is not None:  # the reference score adds the errors relative to contrast
        values["reconstruction"] = float(served.memo(("errors",), art.reconstruction_errors)[i])
    sorted_scores = {} if stats is not None else {  # a folder's parts: shares of the folder
        k: served.memo(("sorted", k), lambda k=k: np.sort(all_scores(k)))
        for k in FOLDER_PARTS if k in values}
    table = pd.DataFrame(score_parts(kind, values, sorted_scores, stats))
    share = ("share of the score" if stats else "share of the folder it is odder than")
    st.markdown("**What the score is made of**")
    st.dataframe(table.rename(columns={"share": share}), hide_index=True, width="stretch",
                 column_order=["part", "value", *(["relative"] if stats else []), share],
                 column_config={"value": st.column_config.NumberColumn(format="%.4f"),
                                "relative": st.column_config.NumberColumn(
                                    "times its normal median", format="%.2f"),
                                share: st.column_config.ProgressColumn(share, format="percent",
                                                                       min_value=0, max_value=1)})


def all_scores(k: str) -> np.ndarray:
    return served.memo(("scores", k), lambda: art.scores(k))


def nearest(i: int, count: int = 5) -> None:
    """The image's nearest images in this folder that score below the threshold."""
    st.markdown("**Nearest normal images** (most similar images of the folder below the threshold)")
    try:
        ids, sims = art.neighbours()
    except StaleError as e:
        st.caption(str(e))
        return
    near = [(int(j), float(s)) for j, s in zip(ids[i], sims[i])
            if j >= 0 and scores[int(j)] < threshold][:count]
    if not near:
        st.caption("None among its nearest images: they all score above the threshold.")
        return
    for col, (j, sim) in zip(st.columns(count), near):
        col.image(thumb(str(art.root / art.items["path"].iat[j])), width="stretch",
                  caption=f"similarity {sim:.3f} · {art.items['path'].iat[j]}")


grid(ranked(np.arange(min(top, len(scores)))))
st.number_input("Inspect the image ranked", 1, max(len(scores), 1), value=None,
                key=f"{INSPECTED}:rank", on_change=inspect_rank,
                help="Opens the panel of the image at this rank of the full ranking.")
inspected = st.session_state.get(INSPECTED)
if inspected is not None and 0 <= inspected < len(scores):
    panel(int(inspected))

st.subheader("Full ranking")
st.link_button("Download ranking CSV", f"{server.base(name, art.dir.name)}/ranking/{kind}.csv",
               icon=":material/download:")
paged(len(scores), lambda rows: ranked(rows)[["rank", "path", "label", "split", "score"]],
      key=f"ranking-{kind}", column_config={"score": st.column_config.NumberColumn(format="%.4f")})
