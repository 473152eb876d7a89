"""Map page: the collection as a 2-D UMAP scatter; hover a point for its image, select points to
see them, search from them or download them."""

import streamlit as st

from fext import projection
from fext.errors import NotFoundError
from fext.ui import server
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
from fext.ui.scatter import scatter
from fext.ui.served import extraction
from fext.workspace import read_json

MAX_SHOWN = 48

header("Map", "The whole collection in 2-D (UMAP of the features): similar images sit together. "
              "Zoom in (mouse wheel) and the points become their pictures; hover a point to see "
              "its image larger; click it, or draw a box or lasso, to select.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)
served = extraction(name, art.dir.name)
try:
    coords = served.coords()
except NotFoundError:
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
ANOMALY = {"reference": "anomaly (unlike training)", "combined": "anomaly (odd ones out)",
           "isolation": "anomaly (isolation)", "reconstruction": "anomaly (reconstruction)",
           "appearance": "anomaly (appearance)"}
kinds = [k for k in art.score_kinds if k in ANOMALY]
placed = projection.placed_of(art)
NEW = "placed since the layout"
left, right = st.columns([3, 1], vertical_alignment="bottom")
options = ["label", "folder"] + [ANOMALY[k] for k in kinds] + ([NEW] if placed is not None else [])
# the most informative colour first: labels where there are two or more, else the anomaly score
labelled = art.items["label"].nunique() >= 2
choice = left.radio("Colour by", options, horizontal=True,
                    index=0 if labelled or not kinds else options.index(ANOMALY[kinds[0]]))
by = "placed" if choice == NEW else next((k for k in kinds if ANOMALY[k] == choice), choice)
drawn = len(server.drawn_of(served))
sample = read_json(art.dir / projection.PARAMS, {}).get("sample")
right.caption(f"{len(coords):,} images · {art.meta['dim']}-d features"
              + (f" · layout fitted on a {sample:,}-image sample, the others placed at their "
                 "nearest neighbours" if sample else "")
              + (f" · {drawn:,} drawn (dense places thinned; selections count every image)"
                 if drawn < len(coords) else ""))
if placed is not None:
    note, act = st.columns([4, 1], vertical_alignment="center")
    note.info(f"{int(placed.sum()):,} images added since the layout was computed are placed next "
              "to their nearest neighbours on it; recompute the layout to lay out every image.",
              icon=":material/add_location:")
    if act.button("Recompute the layout", icon=":material/refresh:"):
        start_job(ws, "project", name, ["--images", str(art.root), "--fresh"])
_, how = server.colours_of(served, by)
base = server.base(name, art.dir.name)
selection = scatter(base=base, plotly=server.PREFIX + "/static/plotly.min.js", colour=by,
                    categories=how.get("categories"), value_range=how.get("range"),
                    colour_name=choice, key=f"map-{art.dir.name}", map_key=server.map_key(served))

st.subheader("Selected images")
try:
    picked = server.selected(coords, ",".join(map(str, (selection or {}).get("poly") or [])),
                             ",".join(map(str, (selection or {}).get("ids") or [])))
except ValueError:
    picked = []
if not len(picked):
    st.caption("Click a point, or draw a box or lasso around several, to see the images here "
               "(double-click the map to clear).")
    st.stop()
scores = served.scores()
rows = art.items.iloc[picked].assign(anomaly=scores[picked], id=picked)
rows = rows.sort_values("anomaly", ascending=False)
query = "&".join(f"{k}={','.join(map(str, v))}" for k, v in (selection or {}).items() if v)
a, b = st.columns([1, 3], vertical_alignment="center")
a.link_button(f"Download {len(rows):,} as CSV", f"{base}/selection.csv?{query}",
              icon=":material/download:")
first = rows.iloc[0]
if b.button(f"Search similar to {first.path}", icon=":material/image_search:"):
    st.session_state["search_query"] = first.path
    st.switch_page("search.py")
st.caption(f"{len(rows):,} selected" + (f" (the {MAX_SHOWN} most unusual shown)"
                                        if len(rows) > MAX_SHOWN else ""))
image_grid(rows.head(MAX_SHOWN), art.root,
           lambda r: " · ".join(filter(None, [r.path, r.label, f"anomaly {r.anomaly:.3f}"])))
