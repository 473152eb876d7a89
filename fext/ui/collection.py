"""Collection page: what a folder holds (images, labels, splits), what was skipped and why;
rescan it, point the app at another folder, or upload images into a new collection."""

import re
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from fext import images as imaging
from fext.collection import Collection
from fext.ui.common import ensure_demo, header, image_grid, model_picker, workspace
from fext.workspace import read_json

MAX_FILE_MB = 25

header("Collection", "The images a model learns from: labels come from sub-folder names, splits "
                     "from each file's content.")
ws = workspace()
ensure_demo(ws)
selected = model_picker(ws)
info = read_json(ws.model_dir(selected) / "config.json", {}) if selected else {}
size = info.get("data", {}).get("image_size", 64)
fit = info.get("data", {}).get("fit", "pad")
folder = st.session_state.get("collection_path") or info.get("data", {}).get("images", "")


def safe_part(text: str) -> str:
    """A file or folder name that cannot climb out of the uploads folder."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", Path(text).name).strip(" .")
    return cleaned[:100] or "image"


def save_uploads(files, collection: str, label: str) -> tuple[Path, list[str], list[str]]:
    dest = ws.uploads_dir() / safe_part(collection)
    if label:
        dest = dest / safe_part(label)
    saved, refused = [], []
    for f in files:
        data = f.getvalue()
        if len(data) > MAX_FILE_MB * 2 ** 20:
            refused.append(f"{f.name}: larger than {MAX_FILE_MB} MB")
            continue
        try:
            imaging.load(data, 16)  # the full check: header, size limit, decodable pixels
        except imaging.ImageError as e:
            refused.append(f"{f.name}: {e}")
            continue
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / safe_part(f.name)
        target.write_bytes(data)
        saved.append(target.name)
    return ws.uploads_dir() / safe_part(collection), saved, refused


with st.expander("Use another folder, or upload images", expanded=not folder):
    left, right = st.columns(2)
    with left:
        typed = st.text_input("Folder on this server", value=folder,
                              help="Scanned recursively; the first sub-folder is the label.")
        if st.button("Scan this folder"):
            if not typed or not Path(typed).expanduser().is_dir():
                st.error(f"Folder not found on the server: `{typed}`.")
            else:
                st.session_state["collection_path"] = str(Path(typed).expanduser().resolve())
                st.session_state["rescan"] = True
                st.rerun()
    with right:
        with st.form("upload", clear_on_submit=True):
            files = st.file_uploader("Images", accept_multiple_files=True,
                                     help=f"JPEG, PNG, WebP, GIF, BMP, TIFF; up to {MAX_FILE_MB} MB each")
            c1, c2 = st.columns(2)
            coll_name = c1.text_input("Collection name", value="uploads")
            label = c2.text_input("Label (optional)", help="saved into a sub-folder of this name")
            if st.form_submit_button("Add to collection") and files:
                dest, saved, refused = save_uploads(files, coll_name, label)
                for r in refused:
                    st.error(f"Refused {r}")
                if saved:
                    st.success(f"Saved {len(saved)} image(s) into `{dest}`.")
                    st.session_state["collection_path"] = str(dest)
                    st.session_state["rescan"] = True

if not folder:
    st.info("Choose a folder of images above, or upload some, to get started.")
    st.stop()
if not Path(folder).is_dir():
    st.error(f"The folder `{folder}` does not exist any more. Choose another one above.")
    st.stop()

rescan = st.button("Rescan", help="Pick up added, changed and removed files") or \
    st.session_state.pop("rescan", False)
try:
    coll = None if rescan else Collection.open(ws, folder, size, fit)
except FileNotFoundError:
    coll = None
if coll is None:
    bar = st.progress(0.0, text="Scanning…")
    coll = Collection.sync(ws, folder, size, fit, progress=lambda stage, done, total, **_: bar.progress(
        done / max(total, 1), text=f"Decoding new files: {done}/{total}"))
    bar.empty()

items, skipped = coll.items(), coll.skipped()
st.markdown(f"**`{coll.root}`**")
a, b, c, d = st.columns(4)
a.metric("Readable images", f"{len(items):,}")
b.metric("Skipped files", f"{len(skipped):,}")
c.metric("Labels", len(coll.labels()))
d.metric("Train / val / test", " / ".join(str((items["split"] == s).sum()) for s in ("train", "val", "test")))
if len(items) == 0:
    st.warning("No readable images in this folder. Add JPEG, PNG, WebP, GIF, BMP or TIFF files, "
               "then rescan.")
else:
    counts = items.assign(label=items["label"].replace("", "(none)")) \
        .groupby(["label", "split"]).size().reset_index(name="images")
    fig = px.bar(counts, x="label", y="images", color="split", height=280,
                 category_orders={"split": ["train", "val", "test"]})
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch")
    st.subheader("A few images")
    sample = items.sort_values("sha1").head(12)
    image_grid(sample, coll.root, lambda r: f"{r.path}\n{r.label or '(no label)'} · {r.split}")
if len(skipped):
    st.subheader("Skipped files")
    st.dataframe(skipped, hide_index=True, width="stretch")
