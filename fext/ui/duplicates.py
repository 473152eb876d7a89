"""Duplicates page: groups of exact and near-duplicate images, largest first, with a keeper each.

Reads the neighbour lists and the calibrated threshold stored at extraction: moving the
threshold regroups them in memory, it never searches the index again.
"""

import pandas as pd
import streamlit as st

from fext.duplicates import find
from fext.errors import StaleError
from fext.ui import server
from fext.ui.common import header, need_artifacts, need_model, start_job, thumb, workspace

GROUPS_PER_PAGE = 10
COLUMNS = 6  # thumbnails per row of a group

header("Duplicates", "Copies of the same picture: identical files, and images re-saved, resized, "
                     "cropped a little or recoloured. FEXT suggests a keeper for each group and "
                     "never deletes, moves or changes a file.")
ws = workspace()
name = need_model(ws)
art = need_artifacts(ws, name)


@st.cache_data(max_entries=16, show_spinner="Grouping…")
def grouped(root: str, name: str, version: str, threshold: float, _art) -> dict:
    """Groups at one threshold, per extraction version (a new extraction regroups), of the
    extraction the page already holds (`_art`: not hashed; its table is not read again)."""
    return find(_art, threshold)


try:
    calibrated = grouped(str(ws.root), name, art.dir.name, "auto", art)
except StaleError as e:
    st.warning(str(e), icon=":material/warning:")
    if st.button("Extract features again", type="primary"):
        start_job(ws, "extract", name, ["--images", str(art.root)])
    st.stop()

cal = calibrated["calibration"]
if cal["trusted"]:
    st.info(f"Suggested threshold **{cal['threshold']:.4f}**, {cal['text']}: on {cal['sample']} "
            f"edited copies of this collection's own images, {cal['copies_kept']:.0%} are found; "
            f"an estimated {cal['false_grouping']:.2%} of images would be grouped with an image "
            "that is not a copy.", icon=":material/tune:")
else:
    st.warning(f"**No near-duplicate removals suggested.** FEXT cannot tell copies from "
               f"look-alikes in this collection ({cal['text'].removeprefix('not trusted: ')}). "
               "Identical files are still listed. Move the slider to look at groups of similar "
               "images yourself: they are look-alikes as often as copies.",
               icon=":material/help:")
low = min(0.0, float(cal["threshold"]))
start = float(min(max(cal["threshold"], low), 1.0)) if cal["trusted"] else 1.0
help_text = ("Two images are copies when their vectors' cosine similarity, less what unrelated "
             "images score against them (their 8th nearest neighbour's), is at least this, and "
             f"their perceptual hashes differ in at most {cal['hash_distance']} of 64 bits (a "
             "second check, independent of the model). Lower finds more, and more false matches.")
if cal.get("pixels"):
    help_text += (" At the suggested threshold a pair's aligned pixels must agree too; at any "
                  "other, scores and hashes alone group.")
if not cal["trusted"]:
    help_text += " Here no threshold is suggested: at 1.000 only identical files are grouped."
threshold = st.slider("Similarity threshold", low, 1.0, start, step=0.001, format="%.3f",
                      help=help_text)
suggested = cal["trusted"] and threshold == cal["threshold"]
result = calibrated if suggested or (not cal["trusted"] and threshold == 1.0) else grouped(
    str(ws.root), name, art.dir.name, threshold, art)
found = result["groups"]
if cal.get("pixels") and not suggested:
    st.caption(f"Looking at {threshold:.3f}: these groups are what scores and hashes find, "
               "without the pixel check the suggestion passes, so look-alikes may be among them.")

a, b, c = st.columns(3, border=True)
a.metric("Images", f"{result['count']:,}")
b.metric("Duplicate groups", f"{len(found):,}")
c.metric("Files that could be removed", f"{result['removable']:,}")
st.link_button("Download suggested removals (CSV)",
               f"{server.base(name, art.dir.name)}/duplicates.csv?threshold="
               + ("auto" if result is calibrated else repr(threshold)),
               type="primary", icon=":material/download:", disabled=not len(found))
st.caption("Each group: its members are each similar to the group's representative (the image "
           "with the closest match); the keeper is the file with the most pixels, then the oldest, "
           "then the shortest path. Exact copies (identical content) are marked =.")

if not len(found):
    st.success("No identical files." if not cal["trusted"] and threshold == 1.0 else
               "No duplicates at this threshold.", icon=":material/check_circle:")
    st.stop()
pages = (len(found) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
page = st.number_input(f"Page (of {pages}, largest groups first)", 1, pages, 1) if pages > 1 else 1
start = (page - 1) * GROUPS_PER_PAGE
for i in range(start, min(start + GROUPS_PER_PAGE, len(found))):
    group = found.group(i, art.items)
    members = pd.DataFrame(group["members"])
    with st.container(border=True):
        st.markdown(f"**Group {i + 1}** · {len(members)} files · keep `{group['keeper']}`")
        cols = st.columns(COLUMNS)  # the same thumbnail size in a group of two as of twenty
        for j, m in enumerate(members.itertuples(index=False)):
            role = ("keep" if m.path == group["keeper"] else "remove") + (
                " · representative" if m.path == group["representative"] else "")
            score = "" if pd.isna(m.similarity) else f"{m.similarity:.3f} · "
            with cols[j % COLUMNS]:
                st.image(thumb(str(art.root / m.path)), width="stretch",
                         caption=f"{'= ' if m.exact else ''}{score}{role} · {m.path}")
