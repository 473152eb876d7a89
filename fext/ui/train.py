"""Train page: settings, a background training job with live curves, and earlier runs compared."""

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from fext import jobs
from fext.config import PRESETS
from fext.ui.common import header, job_progress, model_picker, start_job, workspace
from fext.workspace import NAME_RE, read_json

header("Train", "Train an autoencoder on a folder of images; features, index and map follow.")
ws = workspace()
selected = model_picker(ws)

running = [j for j in jobs.all_jobs(ws) if j.status == "running"]
for job in running:
    st.subheader(f"Running: {job.spec.get('command')} {job.spec.get('name') or ''}")
    job_progress(job.id)

default_images = st.session_state.get("collection_path")
if not default_images and selected:
    default_images = read_json(ws.model_dir(selected) / "config.json", {}).get("data", {}).get("images", "")
with st.form("train"):
    st.subheader("New model")
    c1, c2, c3 = st.columns(3)
    images = c1.text_input("Image folder (on this server)", value=default_images or "",
                           help="Sub-folders are labels. Upload images on the Collection page.")
    name = c2.text_input("Model name", value="my-model", help="letters, digits, _ - .")
    preset = c3.selectbox("Preset", list(PRESETS), index=1,
                          help="small: 2 blocks · medium: 3 · large: 4 · vgg16: VGG16's 5 blocks")
    c1, c2, c3, c4 = st.columns(4)
    size = c1.select_slider("Image size (px)", [16, 32, 64, 96, 128, 160, 192, 224, 256], value=64)
    latent = c2.select_slider("Feature size", [8, 16, 32, 64, 96, 128, 192, 256, 512], value=128)
    epochs = c3.number_input("Epochs", 1, 500, 30)
    batch = c4.select_slider("Batch size", [8, 16, 32, 64, 128, 256], value=64)
    c1, c2, c3 = st.columns(3)
    lr = c1.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3], value=1e-3)
    fit = c2.radio("Keep aspect ratio by", ["pad", "crop"], horizontal=True)
    patience = c3.number_input("Early-stopping patience", 1, 50, 5)
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    from pathlib import Path
    steps = 2 ** len(PRESETS[preset])
    if not NAME_RE.match(name):
        st.error("Model names use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit.")
    elif not images or not Path(images).expanduser().is_dir():
        st.error(f"Folder not found on the server: `{images}`. Type the path of an existing folder.")
    elif size % steps:
        st.error(f"The {preset} preset halves the image {len(PRESETS[preset])} times: choose an "
                 f"image size that is a multiple of {steps}.")
    else:
        start_job(ws, "build", name, ["--images", images, "--preset", preset, "--image-size", size,
                                      "--latent-dim", latent, "--epochs", epochs, "--batch-size",
                                      batch, "--learning-rate", lr, "--fit", fit,
                                      "--patience", patience])

st.subheader("Runs")
rows, curves = [], []
for model in ws.models():
    d = ws.model_dir(model)
    info, metrics = read_json(d / "config.json", {}), read_json(d / "metrics.json", {})
    test = metrics.get("splits", {}).get("test", {})
    rows.append({"model": model, "preset": info["model"]["preset"],
                 "features": info["model"]["latent_dim"], "px": info["data"]["image_size"],
                 "epochs": metrics.get("epochs_run"), "best epoch": metrics.get("best_epoch"),
                 "test loss": test.get("loss"), "test PSNR": test.get("psnr"),
                 "test SSIM": test.get("ssim"), "trained": info.get("trained_at"),
                 "images": info["data"]["images"]})
    if (d / "history.csv").is_file():
        h = pd.read_csv(d / "history.csv")
        if "val_loss" in h:
            curves.append(h.assign(model=model)[["epoch", "val_loss", "model"]])
if not rows:
    st.info("No finished runs yet.")
else:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if curves:
        fig = px.line(pd.concat(curves), x="epoch", y="val_loss", color="model", log_y=True,
                      height=320, title="Validation loss")
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch")
finished = [j for j in jobs.all_jobs(ws)[:10] if j.status != "running"]
if finished:
    with st.expander("Recent jobs"):
        st.dataframe(pd.DataFrame([{"job": j.id, "command": j.spec.get("command"),
                                    "model": j.spec.get("name"), "status": j.status,
                                    "message": j.error() if j.status == "failed" else ""}
                                   for j in finished]), hide_index=True, width="stretch")
