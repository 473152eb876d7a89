"""Collection page: what a folder holds (images, labels, splits), what was skipped and why;
rescan it, point the app at another folder, or upload images into a new collection."""

import re
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from fext import images as imaging
from fext import registry
from fext.collection import Collection, store_dir
from fext.config import DataConfig
from fext.errors import ImageError
from fext.ui import access
from fext.ui.common import (
    demo_job,
    header,
    image_grid,
    model_picker,
    paged,
    show_demo_progress,
    workspace,
)
from fext.workspace import Workspace

MAX_FILE_MB = 20  # also server.maxUploadSize in .streamlit/config.toml

header("Collection", "The images a model learns from: labels come from sub-folder names, "
                     "train/val/test splits from each file's content.")
ws = workspace()
selected = model_picker(ws)
if selected is None and (job := demo_job(ws)) is not None:
    show_demo_progress(job)
    st.stop()
data = registry.open_record(ws, selected).config.data if selected else DataConfig()
size, fit = data.image_size, data.fit
folder = st.session_state.get("collection_path") or data.images


def safe_part(text: str) -> str:
    """A file or folder name that cannot climb out of the uploads folder."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", Path(str(text).replace("\\", "/")).name).strip(" .")
    return cleaned[:100] or "image"


def save_uploads(files, collection: str, label: str) -> tuple[Path, list[str], list[str]]:
    """Write the readable uploads under the workspace's uploads folder; refuse the others."""
    root = ws.uploads_dir() / safe_part(collection)
    dest = root / safe_part(label) if label.strip() else root
    saved, refused = [], []
    for f in files:
        data = f.getvalue()
        if len(data) > MAX_FILE_MB * 2 ** 20:
            refused.append(f"**{f.name}**: larger than {MAX_FILE_MB} MB")
            continue
        try:
            imaging.load(data, 16)  # the full check: header, size limit, decodable pixels
        except ImageError as e:
            refused.append(f"**{f.name}**: {e}")
            continue
        target = dest / safe_part(f.name)
        if ws.root not in target.resolve().parents:  # belt and braces: never outside the workspace
            refused.append(f"**{f.name}**: invalid name")
            continue
        dest.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        saved.append(target.name)
    return root, saved, refused


def use_folder(path: Path) -> None:
    st.session_state["collection_path"] = str(path)
    st.session_state["rescan"] = True


with st.expander("Use another folder, or upload images", expanded=not folder,
                 icon=":material/create_new_folder:"):
    left, right = st.columns(2)
    with left:
        typed = st.text_input("Folder on this server", value=folder,
                              help="Scanned recursively; the first sub-folder is the label.")
        if st.button("Scan this folder", icon=":material/search:"):
            if typed.strip() and not access.allowed(typed):  # before existence: no probing
                st.error(f"`{typed}` is outside the folders this server lets the app open: "
                         + ", ".join(f"`{r}`" for r in access.roots())
                         + ". Whoever runs the server can allow others with FEXT_ROOTS.")
            elif not typed.strip() or not Path(typed).expanduser().is_dir():
                st.error(f"Folder not found on the server: `{typed}`. Type the full path of an "
                         "existing folder.")
            else:
                use_folder(Path(typed).expanduser().resolve())
                st.rerun()
    with right:
        with st.form("upload", clear_on_submit=True):
            files = st.file_uploader("Images", accept_multiple_files=True,
                                     help=f"JPEG, PNG, WebP, GIF, BMP, TIFF; up to {MAX_FILE_MB} MB "
                                          "each. Saved in this workspace's data/uploads folder.")
            c1, c2 = st.columns(2)
            coll_name = c1.text_input("Collection name", value="uploads")
            label = c2.text_input("Label (optional)", help="saved into a sub-folder of this name")
            if st.form_submit_button("Add to collection", icon=":material/upload:"):
                if not files:
                    st.error("Choose one or more image files first.")
                else:
                    dest, saved, refused = save_uploads(files, coll_name, label)
                    for r in refused:
                        st.error(f"Refused {r}")
                    if saved:
                        st.success(f"Saved {len(saved)} image(s) into `{dest}`.")
                        use_folder(dest)
                        folder = str(dest)

if not folder:
    st.info("Choose a folder of images above, or upload some, to get started.")
    st.stop()
if not Path(folder).is_dir():
    st.error(f"The folder `{folder}` does not exist any more. Choose another one above.")
    st.stop()

top = st.columns([4, 1], vertical_alignment="center")
top[0].markdown(f":material/folder_open: **`{Path(folder).resolve()}`** · scanned at {size} px")
rescan = top[1].button("Rescan", icon=":material/refresh:", width="stretch",
                       help="Pick up added, changed and removed files") or \
    st.session_state.pop("rescan", False)
manifest = store_dir(ws, Path(folder).resolve(), size, fit) / "manifest.csv"
if rescan or not manifest.is_file():
    bar = st.progress(0.0, text="Scanning…")
    Collection.sync(ws, folder, size, fit, progress=lambda stage, done, total, **_: bar.progress(
        done / max(total, 1), text=f"Decoding new files: {done}/{total}"))
    bar.empty()


@st.cache_data(max_entries=4, show_spinner="Reading the collection…")
def across_splits(items: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` images taken in turn from each split, each split's first by content hash (the
    split itself comes from that hash, so the first by hash alone are all of one split)."""
    ordered = items.sort_values("sha1")
    turn = ordered.groupby("split").cumcount()
    return ordered.assign(_turn=turn.to_numpy()).sort_values(["_turn", "split"]).head(count)


def summary(root: str, folder: str, size: int, fit: str, stamp: int) -> dict:
    """What the page shows of a scanned folder, read once per state of its manifest (`stamp`):
    at a million images the manifest is not re-read on every rerun."""
    coll = Collection.open(Workspace(root), folder, size, fit)
    items = coll.items()
    return {"root": coll.root, "count": len(items), "labels": len(coll.labels()),
            "splits": [int((items["split"] == s).sum()) for s in ("train", "val", "test")],
            "counts": items.assign(label=items["label"].replace("", "(none)"))
            .groupby(["label", "split"]).size().reset_index(name="images"),
            "sample": across_splits(items, 12)[["path", "label", "split"]],
            "skipped": coll.skipped()}


info = summary(str(ws.root), folder, size, fit, manifest.stat().st_mtime_ns)
skipped = info["skipped"]
# a row that wraps: each figure as wide as it needs, never cut off by a fixed column width
with st.container(horizontal=True):
    st.metric("Readable images", f"{info['count']:,}", border=True)
    st.metric("Skipped files", f"{len(skipped):,}", border=True)
    st.metric("Labels", info["labels"], border=True)
    st.metric("Train / val / test", " / ".join(f"{n:,}" for n in info["splits"]), border=True)
if info["count"] == 0:
    st.error("No readable images in this folder. Add JPEG, PNG, WebP, GIF, BMP or TIFF files "
             "(sub-folders become labels), then rescan, or choose another folder above.")
else:
    chart, sample = st.columns([2, 3])
    with chart:
        st.subheader("Images per label and split")
        fig = px.bar(info["counts"], x="label", y="images", color="split", height=320,
                     category_orders={"split": ["train", "val", "test"]},
                     color_discrete_sequence=["#2f6fdf", "#f2a541", "#3aa17e"])
        fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), legend_title_text="",
                          xaxis_title=None, legend=dict(orientation="h", y=1.1))
        fig.update_xaxes(type="category")  # labels are folder names, even "0".."9"
        st.plotly_chart(fig, width="stretch")
    with sample:
        st.subheader("A few images")
        image_grid(info["sample"], info["root"], lambda r: f"{r.label or '(no label)'} · {r.split}",
                   columns=6)
if len(skipped):
    st.subheader(f"Skipped files ({len(skipped)})")
    st.caption("Files that are not readable images; they are left out of training and search.")
    paged(len(skipped), lambda rows: skipped.iloc[rows], key="skipped",
          column_config={"path": "File", "reason": "Why it was skipped"})
