"""What every page shares: the workspace, the model picker, cached loaders, job progress."""

from __future__ import annotations

import ctypes
import functools
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fext import demo, jobs, registry
from fext.artifacts import Artifacts, extractions
from fext.errors import BusyError, StaleError
from fext.images import thumbnail
from fext.workspace import Workspace


def workspace() -> Workspace:
    """The workspace of this server (FEXT_WORKSPACE, or the repository root)."""
    return Workspace()


def release_freed_memory() -> None:
    """Hand the heap memory this run freed back to the system (glibc's `malloc_trim`).

    A page frees large temporaries (tables, pixel batches, TensorFlow buffers) that glibc keeps
    in its arenas for reuse, so the server's resident memory ratchets up as pages are visited.
    Called after every run of the script; a no-op where the C library has no `malloc_trim`.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:  # the C library the process already has loaded
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def header(title: str, caption: str) -> None:
    """Every page opens the same way: a title and one line saying what the page is for."""
    st.title(title)
    st.caption(caption)


# -- demo on first start ----------------------------------------------------------------------
def demo_job(ws: Workspace) -> jobs.Job | None:
    """The running demo preparation, starting it once on a newcomer's workspace
    (`demo.start_preparing`: no model and no job yet, the bundled images present)."""
    job = demo.start_preparing(ws)
    if job is not None or "demo" in registry.names(ws) or not demo.DEMO_DIR.is_dir():
        return job
    last = jobs.latest(ws, command="demo")
    if last is not None and last.status == "failed":
        st.error(f"Preparing the demo failed: {last.error()}")
        if st.button("Try again"):
            return demo.start_preparing(ws, retry=True)
    return None


def show_demo_progress(job: jobs.Job) -> None:
    st.info("Preparing the demo collection: a small model learns the bundled handwritten digits, "
            "then features, index and map are built. This takes a couple of minutes, once; "
            "every page is ready when it ends.", icon=":material/hourglass_top:")
    job_progress(job.id)


# -- models -------------------------------------------------------------------------------------
def model_picker(ws: Workspace) -> str | None:
    """Sidebar selector of finished models; the choice is kept across pages."""
    names = registry.names(ws)
    with st.sidebar:
        if not names:
            st.info("No trained model yet.")
            st.caption(f"Workspace: `{ws.root}`")
            return None
        current = st.session_state.get("model")
        if current not in names:
            current = "demo" if "demo" in names else names[0]
        name = st.selectbox("Model", names, index=names.index(current),
                            help="Every page shows the features, map and scores of this model.")
        st.session_state["model"] = name
        cfg = (record := registry.open_record(ws, name)).config
        st.caption(f"**{cfg.model.preset}** preset · {cfg.model.latent_dim}-d features · "
                   f"{cfg.data.image_size} px · trained {record.trained_at}")
        st.caption(f"Images: `{cfg.data.images}`")
        st.caption(f"Workspace: `{ws.root}`")
    return name


def need_model(ws: Workspace) -> str:
    """The selected model, or guidance (and the demo's progress) when there is none yet."""
    name = model_picker(ws)
    if name is None:
        job = demo_job(ws)
        if job is not None:
            show_demo_progress(job)
        else:
            st.info("There is no trained model yet. Train one on the **Train** page "
                    "(point it at a folder of images, or upload images on the **Collection** "
                    "page first).", icon=":material/model_training:")
        st.stop()
    return name


def running_for(ws: Workspace, name: str) -> jobs.Job | None:
    """A job writing `name`'s artefacts: its own, or the demo preparation for the demo model."""
    job = jobs.active(ws, name)
    if job is None and name == demo.DEMO_NAME:
        job = jobs.active(ws, command="demo")
    return job


def extraction_picker(ws: Workspace, name: str) -> str | None:
    """Sidebar choice of which folder's extraction the pages show, where the model has several
    (the most recent first); None: the most recent."""
    kept = extractions(ws, name)
    if len(kept) < 2:
        return None
    folders = [e["images"] for e in kept]
    key = f"extraction:{name}"
    if st.session_state.get(key) not in folders:
        st.session_state[key] = folders[0]
    with st.sidebar:
        return st.selectbox("Image folder", folders, key=key,
                            help="This model has extracted several folders; every page shows "
                                 "the one chosen here (the most recent first).")


def need_artifacts(ws: Workspace, name: str) -> Artifacts:
    """The chosen extraction of `name`, or a clear message (and a way to build it), then stop."""
    from fext.ui.served import extraction

    try:
        art = extraction(name, Artifacts.locate(ws, name, extraction_picker(ws, name)).name).art
        art.check(ws)
        return art
    except (FileNotFoundError, StaleError) as e:
        running = running_for(ws, name)
        if running is not None:
            st.info(f"Extraction running for **{name}** ({running.spec.get('command')} job): "
                    "this page fills in when it ends.", icon=":material/hourglass_top:")
            job_progress(running.id)
            st.stop()
        stale = isinstance(e, StaleError)
        st.warning(f"Model **{name}** was retrained since its features were extracted."
                   if stale else f"Model **{name}** has no features yet.",
                   icon=":material/warning:")
        st.caption("Extraction encodes every image of the collection: features, similarity "
                   "index and anomaly scores (`python -m fext extract` does the same).")
        if st.button("Extract features now", type="primary"):
            start_job(ws, "extract", name, [])
        st.stop()


def start_job(ws: Workspace, command: str, name: str | None, args: list) -> None:
    """Start a background job and rerun so every part of the page shows it running."""
    try:
        job = jobs.start(ws, command, name, args)
    except BusyError as e:
        st.error(str(e))
        return
    st.session_state["last_job"] = job.id
    time.sleep(0.3)
    st.rerun()


# -- cached loaders ---------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading model and index…")
def searcher(root: str, name: str, version: str, images: str):
    """Model + index in memory, keyed on the extraction version (a new extraction reloads)."""
    from fext.search import Searcher
    return Searcher.open(Workspace(root), name, images)


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def autoencoder(root: str, name: str, fingerprint: str):
    """The trained autoencoder, keyed on its fingerprint (retraining gives a new one)."""
    return registry.load(Workspace(root), name)[0]


@st.cache_data(max_entries=5000, show_spinner=False)
def thumb(source: str | bytes, size: int = 160) -> bytes:
    """PNG preview of an image file or of uploaded bytes."""
    buf = io.BytesIO()
    thumbnail(source, size).save(buf, "PNG")
    return buf.getvalue()


def image_grid(rows: pd.DataFrame, root: Path, caption, columns: int = 6) -> None:
    """Thumbnails in a grid, row by row so that rows line up; `caption(row)` gives each text."""
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for col, row in zip(cols, records[start:start + columns]):
            with col:
                st.image(thumb(str(root / row.path)), caption=caption(row), width="stretch")


def paged(count: int, rows, key: str, per_page: int = 100, **table) -> None:
    """A long table a page at a time: `rows(positions)` builds only the rows shown."""
    pages = max((count + per_page - 1) // per_page, 1)
    page = st.number_input(f"Page (of {pages:,}, {per_page} rows each)", 1, pages, 1,
                           key=f"page-{key}") if pages > 1 else 1
    start = (page - 1) * per_page
    st.dataframe(rows(np.arange(start, min(start + per_page, count))), hide_index=True,
                 width="stretch", **table)


def spans_a_decade(values: pd.Series) -> bool:
    """Whether loss curves want a log axis: their positive values span a factor of 10. Within
    a decade a log axis's ticks at two digits repeat a value (0.37, 0.36, 0.36, ...), and a
    linear axis reads better."""
    values = values[values > 0]
    return bool(len(values)) and bool(values.max() >= 10 * values.min())


# -- jobs ---------------------------------------------------------------------------------------
def job_label(job: jobs.Job) -> str:
    spec = job.spec
    return f"{spec.get('command')} {spec.get('name') or ''}".strip()


@st.fragment(run_every=1.0)
def job_progress(job_id: str, stages: dict | None = None, curves: tuple = ("loss", "val_loss"),
                 y_label: str = "objective") -> None:
    """Live view of a background job (`live_job`); when it ends, the whole page reruns to
    show the results, or it says why it failed."""
    ws = workspace()
    job = jobs.Job(job_id, ws.jobs_dir() / job_id)
    status = job.status
    if status != "running":
        if status == "failed":
            st.error(f"The {job_label(job)} job failed: {job.error()}")
        elif st.session_state.get("_job_seen") != job_id:
            st.session_state["_job_seen"] = job_id
            st.rerun()
        return
    live_job(job, stages, curves, y_label)


def live_job(job: jobs.Job, stages: dict | None = None, curves: tuple = ("loss", "val_loss"),
             y_label: str = "objective") -> None:
    """A running job's stage (as `stages` names it, where it does), progress, the epoch
    curves among `curves` and a cancel button."""
    p = job.progress
    done, total = p.get("done", 0), max(p.get("total", 0), 1)
    info = p.get("info", {})
    extra = " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in info.items() if k in ("epoch", "loss", "reused", "skipped"))
    stage = p.get("stage") or "starting"
    st.progress(min(done / total, 1.0),
                text=f"**{job_label(job)}** · {(stages or {}).get(stage, stage)}: "
                     f"{done}/{p.get('total', 0)} {extra}")
    history = pd.DataFrame(p.get("history", []))
    cols = [c for c in curves if c in history]
    if len(history) and "epoch" in history and cols:
        import plotly.express as px

        long = history.melt(id_vars="epoch", value_vars=cols, var_name="curve")
        fig = px.line(long, x="epoch", y="value", color="curve", markers=True, height=240)
        fig.update_xaxes(dtick=1)  # epochs are whole numbers
        fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), yaxis_title=y_label,
                          legend_title=None)  # short: a longer label is cut off
        st.plotly_chart(fig, width="stretch")
    if st.button("Cancel", key=f"cancel-{job.id}", icon=":material/cancel:"):
        job.cancel()
        st.rerun()
