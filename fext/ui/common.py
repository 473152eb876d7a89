"""What every page shares: the workspace, the model picker, cached loaders, job progress."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fext import demo, jobs
from fext.features import Artifacts, StaleError
from fext.images import thumbnail
from fext.train import model_info
from fext.workspace import Workspace


def workspace() -> Workspace:
    return Workspace()


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


# -- demo on first start ----------------------------------------------------------------------
def ensure_demo(ws: Workspace) -> None:
    """On a workspace without the demo model, prepare it once, in the background."""
    if "demo" in ws.models() or not demo.DEMO_DIR.is_dir():
        return
    job = jobs.active(ws, command="demo")
    if job is None and not ws.is_locked(demo.DEMO_NAME):
        last = jobs.latest(ws, command="demo")
        if last is not None and last.status == "failed":
            st.error(f"Preparing the demo failed: {last.error()}")
            if not st.button("Try again"):
                return
        job = jobs.start(ws, "demo", None, [])
    if job is not None:
        st.info("Preparing the demo collection: training a small model on handwritten digits, "
                "then extracting features and the map. This takes a couple of minutes, once.")
        job_progress(job.id)


# -- models -------------------------------------------------------------------------------------
def model_picker(ws: Workspace) -> str | None:
    """Sidebar selector of finished models; the choice is kept across pages."""
    names = ws.models()
    with st.sidebar:
        if not names:
            st.info("No trained model yet.")
            return None
        current = st.session_state.get("model")
        if current not in names:
            current = "demo" if "demo" in names else names[0]
        name = st.selectbox("Model", names, index=names.index(current))
        st.session_state["model"] = name
        info = model_info(ws, name)
        st.caption(f"**{info['model']['preset']}** preset · {info['model']['latent_dim']}-d features · "
                   f"{info['data']['image_size']} px · trained {info.get('trained_at', '')}")
        st.caption(f"Images: `{info['data']['images']}`")
    return name


def need_model(ws: Workspace) -> str:
    name = model_picker(ws)
    if name is None:
        ensure_demo(ws)
        st.info("There is no trained model yet. Train one on the **Train** page.")
        st.stop()
    return name


def need_artifacts(ws: Workspace, name: str) -> Artifacts:
    """The live extraction of `name`, or a clear message (and a way to build it), then stop."""
    try:
        return Artifacts.open(ws, name)
    except (FileNotFoundError, StaleError) as e:
        running = jobs.active(ws, name)
        if running is not None:
            st.info(f"A {running.spec.get('command')} job is running for **{name}**.")
            job_progress(running.id)
            st.stop()
        st.warning(str(e).replace("python -m fext extract", "the button below, or `python -m fext extract`"))
        if st.button("Extract features now", type="primary"):
            start_job(ws, "extract", name, [])
        st.stop()


def start_job(ws: Workspace, command: str, name: str | None, args: list[str]) -> None:
    try:
        jobs.start(ws, command, name, args)
    except RuntimeError as e:
        st.error(str(e))
        return
    time.sleep(0.3)
    st.rerun()


# -- cached loaders ---------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading model and index…")
def searcher(root: str, name: str, version: str):
    """Model + index in memory, keyed on the extraction version (a new extraction reloads)."""
    from fext.search import Searcher
    return Searcher.open(Workspace(root), name)


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def autoencoder(root: str, name: str, fingerprint: str):
    from fext.train import load_model
    return load_model(Workspace(root), name)[0]


@st.cache_data(max_entries=5000, show_spinner=False)
def thumb(source: str | bytes, size: int = 160) -> bytes:
    """PNG preview of an image file or of uploaded bytes."""
    buf = io.BytesIO()
    thumbnail(source, size).save(buf, "PNG")
    return buf.getvalue()


def image_grid(rows: pd.DataFrame, root: Path, caption, columns: int = 6) -> None:
    """Thumbnails in a grid; `caption(row)` gives each one's text."""
    cols = st.columns(columns)
    for i, row in enumerate(rows.itertuples(index=False)):
        with cols[i % columns]:
            st.image(thumb(str(root / row.path)), caption=caption(row), width="stretch")


# -- jobs ---------------------------------------------------------------------------------------
@st.fragment(run_every=1.0)
def job_progress(job_id: str) -> None:
    """Live view of a background job; when it ends, the whole page reruns to show the results."""
    ws = workspace()
    job = jobs.Job(job_id, ws.jobs_dir() / job_id)
    p, status = job.progress, job.status
    if status != "running":
        if status == "failed":
            st.error(f"The {job.spec.get('command')} job failed: {job.error()}")
        elif st.session_state.get("_job_seen") != job_id:
            st.session_state["_job_seen"] = job_id
            st.rerun()
        return
    done, total = p.get("done", 0), max(p.get("total", 0), 1)
    info = p.get("info", {})
    extra = " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in info.items() if k in ("epoch", "loss", "reused", "skipped"))
    st.progress(min(done / total, 1.0),
                text=f"{job.spec.get('command')} · {p.get('stage') or 'starting'}: "
                     f"{done}/{p.get('total', 0)} {extra}")
    history = pd.DataFrame(p.get("history", []))
    if len(history):
        cols = [c for c in ("loss", "val_loss") if c in history]
        st.line_chart(history.set_index("epoch")[cols], height=220)
    if st.button("Cancel", key=f"cancel-{job_id}"):
        job.cancel()
        st.rerun()
