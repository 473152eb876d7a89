"""Train page: settings, every job with its live progress (started here or with `python -m fext`
in a terminal) and how each ended, and earlier runs compared."""

import re
import time
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from fext import jobs, registry
from fext.config import FITS, FOLDERS, PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, help_of
from fext.errors import UsageError
from fext.progress import duration
from fext.ui.common import header, job_label, live_job, model_picker, spans_a_decade, start_job, workspace
from fext.workspace import Workspace, check_name, read_json

header("Train", "Train an autoencoder on a folder of images; features, index and map follow "
                "automatically. Jobs run in the background: reloading the page does not stop them, "
                "and those started in a terminal (`python -m fext train ...`) show here too.")
ws = workspace()
selected = model_picker(ws)
models = registry.names(ws)


def job_states(ws: Workspace) -> tuple:
    """(id, status) of every recorded job, however it was started: what the page drew."""
    return tuple((j.id, j.status) for j in jobs.all_jobs(ws))


@st.fragment(run_every=1.0)
def watch_jobs(drawn: tuple) -> None:
    """Redraw the page when a job starts or ends, whoever started it (this app, another tab,
    `python -m fext` in a terminal): a new one gets its live view, an ended one its outcome
    and the Runs table its model, without a reload."""
    if job_states(workspace()) != drawn:
        st.rerun()


def started_text(job: jobs.Job) -> str:
    spec = job.spec
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(spec.get("started", 0)))
    pid = f" (process {spec['pid']})" if spec.get("origin") == "cli" else ""
    return f"Started from {job.origin}{pid} at {when}."


@st.fragment(run_every=1.0)
def job_card(job_id: str) -> None:
    """A running job: progress, live loss curves, its epochs and a cancel button; the moment
    it ends (or its process dies without a word), how it ended instead."""
    job = jobs.Job(job_id, workspace().jobs_dir() / job_id)
    status = job.status
    if status != "running":
        outcome(job, status)
        return
    st.subheader(f":material/pending: Running: {job_label(job)}")
    st.caption(started_text(job))
    live_job(job)
    epochs_so_far(job)


EPOCH_COLUMNS = ("epoch", "loss", "val_loss", "val_copies", "learning_rate", "seconds", "best")


def epochs_so_far(job: jobs.Job) -> None:
    """A running job's epochs, one row each as `fext train` prints them, and at most how long
    the epochs left take (the mean epoch's seconds times the epochs left: early stopping may
    end the run sooner)."""
    p = job.progress
    history = pd.DataFrame(p.get("history", []))
    if p.get("status") != "running" or not len(history):
        return
    estimate = p.get("estimate") or {}
    st.dataframe(history[[c for c in EPOCH_COLUMNS if c in history]], hide_index=True,
                 width="stretch", column_config={
                     "loss": st.column_config.NumberColumn("objective (loss)", format="%.5f"),
                     "val_loss": st.column_config.NumberColumn(format="%.5f"),
                     "val_copies": st.column_config.NumberColumn(
                         "held-out copies found", format="percent",
                         help="share of the validation images' edited copies that found their "
                              "source, with the weights as this epoch left them (before the "
                              "read-out publishing adds): it chooses the published epoch"),
                     "learning_rate": st.column_config.NumberColumn(
                         "learning rate", format="%.2g",
                         help="the epoch's: constant by default; with `fext train --lr-drop` it "
                              "falls after each epoch that gains no point of held-out copies"),
                     "seconds": st.column_config.NumberColumn(format="%.1f s"),
                     "best": st.column_config.CheckboxColumn("best so far")})
    epoch, epochs = estimate.get("epoch"), estimate.get("epochs")
    if estimate.get("stopping"):
        st.caption(f"Stopped early after epoch {epoch} of {epochs}: {estimate['stopping']}.")
    elif epoch and epochs and epoch < epochs:
        more, left = epochs - epoch, estimate.get("seconds_left", 0.0)
        st.caption(f"After epoch {epoch} of {epochs}: at most {duration(left)} of training "
                   f"left ({more} more epoch{'s' if more != 1 else ''} of "
                   f"{duration(left / more)} on average; early stopping may end it sooner).")


def outcome(job: jobs.Job, status: str) -> None:
    """How an ended job ended, in one box: finished, failed (with why) or cancelled."""
    what = f"The {job_label(job)} job (started from {job.origin})"
    if status == "done":
        follow = (" Pick the model in the sidebar and open Search, Map or Anomalies."
                  if job.spec.get("command") in ("train", "build", "demo") else "")
        st.success(f"{what} finished.{follow}", icon=":material/check_circle:")
    elif status == "failed":
        st.error(f"{what} failed: {job.error()}", icon=":material/error:")
    else:
        st.info(f"{what} was cancelled.", icon=":material/cancel:")


def jobs_now(states: tuple) -> None:
    """Every running job with its live view; then how the jobs this session saw running, or
    that started since it opened this page, ended (however they were started)."""
    watched = st.session_state.setdefault("train_watched", set())
    opened = st.session_state.setdefault("train_opened", time.time())
    for job_id, status in states:
        if status == "running":
            watched.add(job_id)
            with st.container(border=True):
                job_card(job_id)
    ended = [(jobs.Job(i, ws.jobs_dir() / i), status) for i, status in states
             if status != "running"]
    for job, status in [(j, s) for j, s in ended if j.id in watched
                        or j.id == st.session_state.get("last_job")
                        or j.spec.get("started", 0) >= opened][:5]:
        outcome(job, status)


def default_name() -> str:
    n = 1
    while f"model-{n}" in models:
        n += 1
    return f"model-{n}"


D, M, T = DataConfig(), ModelConfig(), TrainConfig()  # the defaults, from their one source


def settings_form() -> dict | None:
    """The new-model form; returns its values when submitted."""
    images = st.session_state.get("collection_path")
    if not images and selected:
        images = registry.open_record(ws, selected).images
    with st.form("train", border=True):
        st.subheader("New model")
        c1, c2, c3 = st.columns(3)
        v = {"images": c1.text_input("Image folder (on this server)", value=images or "",
                                     help="Sub-folders are labels (classes, or albums: "
                                          "see Sub-folders are). Upload images on the "
                                          "Collection page to get a folder here."),
             "name": c2.text_input("Model name", value=default_name(),
                                   help="letters, digits, _ - . — an existing name is replaced "
                                        "when the new model is ready"),
             "preset": c3.selectbox("Preset", list(PRESETS), index=list(PRESETS).index(M.preset),
                                    help=help_of(ModelConfig, "preset"))}
        c1, c2, c3, c4 = st.columns(4)
        v["size"] = c1.select_slider("Image size (px)", [16, 32, 48, 64, 96, 128, 160, 192, 224, 256],
                                     value=D.image_size, help=help_of(DataConfig, "image_size"))
        v["latent"] = c2.select_slider("Feature size", [8, 16, 32, 64, 96, 128, 192, 256, 512],
                                       value=M.latent_dim, help=help_of(ModelConfig, "latent_dim"))
        v["epochs"] = c3.number_input(f"Epochs ({T.epoch_steps} steps each)", 1, 500, T.epochs,
                                      help=f"{help_of(TrainConfig, 'epochs')}; an epoch is "
                                           f"{T.epoch_steps} optimiser steps whatever the "
                                           "folder's size")
        v["batch"] = c4.select_slider("Batch size", [8, 16, 32, 64, 128, 256], value=T.batch_size,
                                      help=help_of(TrainConfig, "batch_size"))
        c1, c2, c3, c4 = st.columns(4)
        v["lr"] = c1.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3], value=T.learning_rate,
                                   help=help_of(TrainConfig, "learning_rate"))
        v["fit"] = c2.radio("Keep aspect ratio by", list(FITS), index=FITS.index(D.fit),
                            horizontal=True, help=help_of(DataConfig, "fit"))
        v["patience"] = c3.number_input("Early-stopping patience (epochs)", 1, 50, T.patience,
                                        help=help_of(TrainConfig, "patience"))
        v["folders"] = c4.selectbox("Sub-folders are", list(FOLDERS),
                                    index=FOLDERS.index(T.folders),
                                    help=help_of(TrainConfig, "folders"))
        submitted = st.form_submit_button("Start training", type="primary",
                                          icon=":material/play_arrow:")
    return v if submitted else None


def problem(v: dict) -> str | None:
    """Why these settings cannot be trained: the name and the folder, then the settings as
    their own validation (fext.config) judges them, as `train` would."""
    if not v["images"].strip() or not Path(v["images"]).expanduser().is_dir():
        return f"Folder not found on the server: `{v['images']}`. Type the path of an existing folder."
    try:
        check_name(v["name"])
        RunConfig(data=DataConfig(images=v["images"], image_size=v["size"], fit=v["fit"]),
                  model=ModelConfig(preset=v["preset"], latent_dim=v["latent"]),
                  train=TrainConfig(epochs=v["epochs"], batch_size=v["batch"],
                                    learning_rate=v["lr"], patience=v["patience"],
                                    folders=v["folders"])).validate()
    except UsageError as e:
        return str(e)
    return None


def start(v: dict) -> None:
    """Train, then extract and map, as one background `build` job."""
    start_job(ws, "build", v["name"], [
        "--images", str(Path(v["images"]).expanduser()), "--preset", v["preset"],
        "--image-size", v["size"], "--latent-dim", v["latent"], "--epochs", v["epochs"],
        "--batch-size", v["batch"], "--learning-rate", v["lr"], "--fit", v["fit"],
        "--patience", v["patience"], "--folders", v["folders"]])


def runs() -> None:
    """Finished models side by side: settings, test metrics and validation-loss curves."""
    st.subheader("Runs")
    rows, curves = [], []
    for model in models:
        d = ws.model_dir(model)
        record, metrics = registry.open_record(ws, model), read_json(d / "metrics.json", {})
        cfg, test = record.config, metrics.get("splits", {}).get("test", {})
        rows.append({"model": model, "settings": f"{cfg.model.preset} · {cfg.model.latent_dim}-d "
                                                 f"· {cfg.data.image_size} px",
                     "epochs": metrics.get("epochs_run"), "best": metrics.get("best_epoch"),
                     "copies found": metrics.get("val_copies"),
                     "test loss": test.get("loss"), "test PSNR": test.get("psnr"),
                     "test SSIM": test.get("ssim"), "trained": record.trained_at[:16],
                     "image folder": Path(cfg.data.images).name})
        if (d / "history.csv").is_file():
            h = pd.read_csv(d / "history.csv")
            y = "val_loss" if "val_loss" in h else "loss"
            curves.append(h.assign(model=model, curve=y).rename(columns={y: "value"})
                          [["epoch", "value", "model", "curve"]])
    if not rows:
        st.info("No finished runs yet: the models you train appear here, ready to compare.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "settings": st.column_config.TextColumn(help="preset · feature size · image size"),
        "test loss": st.column_config.NumberColumn(format="%.5f"),
        "best": st.column_config.NumberColumn(help="the epoch published (the best)"),
        "copies found": st.column_config.NumberColumn(
            format="percent", help="held-out copies found: the share of the validation "
                                   "images' edited copies that found their source first with "
                                   "the published features (the chosen epoch, read-out "
                                   "included), as the app's search finds them"),
        "test PSNR": st.column_config.NumberColumn(format="%.2f dB"),
        "test SSIM": st.column_config.NumberColumn(format="%.3f"),
        "image folder": st.column_config.TextColumn(
            help="the folder's name: its full path is in the sidebar when the model is picked "
                 "there")})
    if curves:
        both = pd.concat(curves)
        dash = "curve" if both["curve"].nunique() > 1 else None  # a run without a val split
        log = spans_a_decade(both["value"])
        fig = px.line(both, x="epoch", y="value", color="model", line_dash=dash, markers=True,
                      log_y=log, height=340, title="Validation loss per epoch")
        fig.update_xaxes(dtick=1)  # epochs are whole numbers
        if log:
            fig.update_yaxes(tickformat=".2~g")  # whole values, not the digits between decades
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10),
                          yaxis_title=f"loss (training objective{', log' if log else ''})")
        st.plotly_chart(fig, width="stretch")


STATUS = {"done": ":green[done]", "failed": ":red[failed]", "cancelled": ":gray[cancelled]"}
MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def plain(text: str) -> str:
    """`text` as st.markdown shows it letter for letter (no emphasis, link, icon or maths)."""
    return MARKDOWN.sub(r"\\\1", text)


def recent_jobs(states: tuple) -> None:
    """The jobs that ended, the most recent first, from the app or the command line alike: a
    line each, which wraps (a table cell would cut a long reason off)."""
    finished = [(jobs.Job(i, ws.jobs_dir() / i), status) for i, status in states
                if status != "running"][:10]
    if finished:
        with st.expander("Recent jobs", icon=":material/history:"):
            for job, status in finished:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.spec.get("started", 0)))
                why = f": {plain(job.error())}" if status == "failed" else ""
                st.markdown(f"`{when}` · **{plain(job_label(job))}** · from {job.origin} · "
                            f"{STATUS[status]}{why}")


states = job_states(ws)
watch_jobs(states)
jobs_now(states)
values = settings_form()
if values is not None:
    why = problem(values)
    if why:
        st.error(why)
    else:
        start(values)
runs()
recent_jobs(states)
