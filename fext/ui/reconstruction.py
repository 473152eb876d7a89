"""Reconstruction page: loss, PSNR and SSIM per split; originals beside reconstructions; the worst."""

import numpy as np
import pandas as pd
import streamlit as st

from fext import evaluate, jobs
from fext.collection import Collection
from fext.ui.common import autoencoder, header, job_progress, need_model, start_job, workspace
from fext.workspace import read_json

header("Reconstruction", "How faithfully the autoencoder redraws its images, per split, and "
                         "how its features compare with raw pixels and PCA.")
ws = workspace()
name = need_model(ws)
d = ws.model_dir(name)
info, metrics = read_json(d / "config.json"), read_json(d / "metrics.json", {})

splits = metrics.get("splits", {})
test = splits.get("test", {})
if test.get("images"):
    a, b, c = st.columns(3)
    a.metric("Test loss (MSE)", f"{test['loss']:.5f}")
    b.metric("Test PSNR", f"{test['psnr']:.2f} dB")
    c.metric("Test SSIM", f"{test['ssim']:.3f}")
st.dataframe(pd.DataFrame([{"split": k, "images": v.get("images", 0), "loss (MSE)": v.get("loss"),
                            "PSNR (dB)": v.get("psnr"), "SSIM": v.get("ssim")}
                           for k, v in splits.items()]), hide_index=True, width="stretch")
st.caption("The model was chosen on the validation split; the test split is only reported.")


@st.cache_data(max_entries=4, show_spinner="Reconstructing…")
def per_image(root: str, name: str, fingerprint: str):
    from fext.workspace import Workspace
    model = autoencoder(root, name, fingerprint)
    data = info["data"]
    coll = Collection.open(Workspace(root), data["images"], data["image_size"], data["fit"])
    items = coll.items()
    m = evaluate.per_image(model, coll.images, items["row"].to_numpy())
    return items.assign(**m), coll.store


def show_pairs(rows: pd.DataFrame, title: str) -> None:
    st.subheader(title)
    model = autoencoder(str(ws.root), name, info["fingerprint"])
    data = info["data"]
    coll = Collection.open(ws, data["images"], data["image_size"], data["fit"])
    x = evaluate.to_input(coll.images, rows["row"].to_numpy())
    r = np.asarray(model.predict_on_batch(x))
    cols = st.columns(8)
    for i, row in enumerate(rows.itertuples(index=False)):
        with cols[i % len(cols)]:
            st.image(x[i], caption=row.path, width="stretch", clamp=True)
            st.image(r[i], caption=f"PSNR {row.psnr:.1f} · SSIM {row.ssim:.2f}", width="stretch",
                     clamp=True)


try:
    table, _ = per_image(str(ws.root), name, info["fingerprint"])
except FileNotFoundError:
    st.warning("The images this model was trained on are no longer scanned in this workspace; "
               f"rescan `{info['data']['images']}` on the Collection page.")
    st.stop()
test_rows = table[table["split"] == "test"]
sample = (test_rows if len(test_rows) else table).sort_values("sha1").head(8)
show_pairs(sample, "Originals (top) and reconstructions (bottom)")
show_pairs(table.sort_values("mse", ascending=False).head(8), "Worst reconstructed")

st.subheader("Features against baselines")
evaluation = read_json(d / "evaluation.json")
running = jobs.active(ws, name, "evaluate")
if running is not None:
    job_progress(running.id)
elif evaluation and "retrieval" in evaluation:
    auc = evaluation.get("one_class_auc", {})
    st.dataframe(pd.DataFrame([{"method": m, "precision@10": r["precision@10"], "mAP": r["map"],
                                "one-class AUC": (auc.get(m) or {}).get("mean")}
                               for m, r in evaluation["retrieval"].items()]),
                 hide_index=True, width="stretch")
    st.caption(f"Test-split queries ({evaluation['queries']}) against the training split "
               f"({evaluation['database']}), relevant = same label. One-class: trained on one "
               "label, the other labels are anomalies. Same splits for every method.")
elif evaluation and "note" in evaluation:
    st.info(evaluation["note"])
one_class = st.checkbox("Include one-class anomaly detection (trains one model per label)")
if st.button("Run evaluation"):
    start_job(ws, "evaluate", name, ["--one-class"] if one_class else [])
