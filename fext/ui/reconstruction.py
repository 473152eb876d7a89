"""Reconstruction page: loss, PSNR and SSIM per split, beside PCA of the same size; originals beside
both reconstructions; the worst."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fext import evaluate, jobs, registry
from fext.collection import Collection, store_dir
from fext.copies import interval
from fext.feed import gather, sample_rows
from fext.ui.common import autoencoder, header, job_progress, need_model, start_job, workspace
from fext.workspace import Workspace, read_json

header("Reconstruction", "How faithfully the autoencoder redraws its images, per split, and how "
                         "its features compare with raw pixels and PCA.")
ws = workspace()
name = need_model(ws)
d = ws.model_dir(name)
record, metrics = registry.open_record(ws, name), read_json(d / "metrics.json", {})
data = record.config.data


@st.cache_resource(max_entries=2, show_spinner="Fitting the PCA baseline…")
def pca_baseline(root: str, name: str, fingerprint: str) -> evaluate.PCAReconstruction:
    """PCA with as many components as the model has features, fitted on (a seeded sample of)
    its training split, once per model version."""
    coll = Collection.open(Workspace(root), data.images, data.image_size, data.fit)
    return evaluate.PCAReconstruction(coll.images, coll.items("train")["row"].to_numpy(),
                                      record.config.model.latent_dim)


@st.cache_data(max_entries=2, show_spinner="Reconstructing the images…")
def per_image(root: str, name: str, fingerprint: str, sample: int) -> tuple[pd.DataFrame, int]:
    """(MSE, PSNR and SSIM per image, the autoencoder's and PCA's (`_pca` columns), of every
    image or a seeded sample of `sample`; how many images there are), computed once per model
    version."""
    from fext.encoding import extraction_parts  # Keras only where a model runs

    model = autoencoder(root, name, fingerprint)
    coll = Collection.open(Workspace(root), data.images, data.image_size, data.fit)
    items = coll.items()[["path", "split", "sha1", "row"]]
    count = len(items)
    items = items.iloc[sample_rows(np.arange(count), sample)]
    rows = items["row"].to_numpy()
    pca = evaluate.measure(pca_baseline(root, name, fingerprint), coll.images, rows, 256)
    return items.assign(**evaluate.per_image(extraction_parts(model), coll.images, rows),
                        **{f"{k}_pca": v for k, v in pca.items()}), count


@st.cache_resource(max_entries=2)
def pixels(root: str, folder: str, size: int, fit: str, cached_bytes: int) -> np.ndarray:
    """A folder as decoded, memory-mapped, per size of its cache file (rows are only appended,
    never moved): the manifest, seconds to read at a million images, is read once rather than
    on every rerun."""
    return Collection.open(Workspace(root), folder, size, fit).images


def side_by_side(x: np.ndarray, *recons: np.ndarray) -> np.ndarray:
    """Original | reconstruction (| another) in one picture, with thin grey gaps."""
    gap = np.full((x.shape[0], max(1, x.shape[1] // 16), 3), 0.8, np.float32)
    parts = [x] + [p for r in recons for p in (gap, np.asarray(r, np.float32))]
    return np.clip(np.concatenate(parts, axis=1), 0.0, 1.0)


def show_pairs(rows: pd.DataFrame, images: np.ndarray, columns: int = 3) -> None:
    """Each image beside its reconstruction and PCA's, with their scores."""
    model = autoencoder(str(ws.root), name, record.fingerprint)
    pca = pca_baseline(str(ws.root), name, record.fingerprint)
    x = gather(images, rows["row"].to_numpy())
    r, b = np.asarray(model.predict_on_batch(x)), pca(x)
    records = list(rows.itertuples(index=False))
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, range(start, min(start + columns, len(records)))):
            row = records[i]
            col.image(side_by_side(x[i], r[i], b[i]), width="stretch",
                      caption=f"{row.path} · PSNR {row.psnr:.1f} dB (PCA {row.psnr_pca:.1f}) · "
                              f"SSIM {row.ssim:.2f} (PCA {row.ssim_pca:.2f})")


def against_pca(table: pd.DataFrame) -> None:
    """The autoencoder beside PCA of the same size, on the same images, per split."""
    pca = pca_baseline(str(ws.root), name, record.fingerprint)
    st.subheader("Against PCA")
    rows = []
    for split in ("train", "val", "test"):
        g = table[table["split"] == split]
        if len(g):
            rows.append({"split": split, "images": len(g),
                         **{f"{what} · {who}": g[col + suffix].mean()
                            for what, col in (("MSE", "mse"), ("PSNR (dB)", "psnr"), ("SSIM", "ssim"))
                            for who, suffix in (("autoencoder", ""), (pca.name, "_pca"))}})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(
                     format="%.5f" if c.startswith("MSE") else "%.2f" if "PSNR" in c else "%.3f")
                     for r in rows[:1] for c in r if " · " in c})
    test = next((r for r in rows if r["split"] == "test"), rows[-1] if rows else None)
    if test:
        ae, base = test["PSNR (dB) · autoencoder"], test[f"PSNR (dB) · {pca.name}"]
        st.caption(f"{pca.name}: PCA of the pixels with as many components as the model has "
                   f"features ({record.config.model.latent_dim}), fitted on {pca.fitted:,} "
                   f"training images; both measured on the same images. On the {test['split']} "
                   f"split the autoencoder redraws the images "
                   + ("better than" if ae > base else "no better than")
                   + f" PCA ({ae:.2f} against {base:.2f} dB). Pictures below: the image, the "
                   f"autoencoder's reconstruction, {pca.name}'s.")


def split_metrics() -> None:
    splits = metrics.get("splits", {})
    test = splits.get("test", {})
    if test.get("images"):
        a, b, c = st.columns(3, border=True)
        a.metric("Test loss (MSE)", f"{test['loss']:.5f}")
        b.metric("Test PSNR", f"{test['psnr']:.2f} dB")
        c.metric("Test SSIM", f"{test['ssim']:.3f}")
    st.dataframe(pd.DataFrame([{"split": k, "images": v.get("images", 0), "loss (MSE)": v.get("loss"),
                                "PSNR (dB)": v.get("psnr"), "SSIM": v.get("ssim")}
                               for k, v in splits.items()]), hide_index=True, width="stretch",
                 column_config={"loss (MSE)": st.column_config.NumberColumn(format="%.5f"),
                                "PSNR (dB)": st.column_config.NumberColumn(format="%.2f"),
                                "SSIM": st.column_config.NumberColumn(format="%.3f")})
    sampled = [f"{k} on {v['measured']:,} of its {v['images']:,} images" for k, v in splits.items()
               if v.get("measured", v.get("images", 0)) < v.get("images", 0)]
    chosen = (f" (the epoch whose edited copies of validation images found their source first "
              f"most often; with the published features, read-out included, "
              f"{metrics['val_copies']:.1%} of them do; the evaluation below measures the same "
              "on the test split)" if "val_copies" in metrics else "")
    st.caption(f"Best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_run')}, chosen on "
               f"the validation split{chosen}; the test split is only reported."
               + (f" Measured on seeded samples: {', '.join(sampled)}." if sampled else "")
               + (f" Training: {folders['text']}." if (folders := metrics.get("folders", {}))
                  .get("count", 0) >= 2 else ""))


def baselines() -> None:
    """The stored evaluation against raw pixels and PCA, and a button to (re)run it."""
    st.subheader("Features against baselines")
    evaluation = read_json(d / "evaluation.json")
    running = jobs.active(ws, name, "evaluate")
    if running is not None:
        job_progress(running.id)
        return
    copies = (evaluation or {}).get("copies", {})
    if "methods" in copies:
        st.markdown("**Finding an edited copy** (no labels needed)")
        st.dataframe(pd.DataFrame([{"method": m, "recall@1": r["recall@1"],
                                    "95 % interval": interval(r), "recall@5": r["recall@5"]}
                                   for m, r in copies["methods"].items()]),
                     hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f")
                                    for k in ("recall@1", "recall@5")})
        held_out = (f"{copies['queries']} edited copies of {copies['images copied']} images of "
                    f"the {copies['sources']}" if "sources" in copies  # evaluations since the one figure
                    else f"{copies['queries']} of the collection's own images, each edited")
        v = copies.get("validation")
        same = (f" The same test on the validation split, which chose the published epoch: "
                f"{v['recall@1']:.3f} ({interval(v)}, {v['images copied']} images); two splits "
                "that differ within their intervals differ by chance." if v else
                " The same test on the validation split chose the published epoch.")
        alone = copies["methods"].get("autoencoder", {}).get("features alone")
        if alone is not None:
            same += (" The autoencoder's first result is the one the Search page shows first: "
                     "of the five nearest by features, the first whose pixels show the copy's "
                     f"picture; by its features alone, recall@1 is {alone:.3f}.")
        st.caption(f"{held_out} (edited as photos are in everyday use: re-saved as JPEG, resized, "
                   "cropped a little, shifted, blurred, brightness and contrast changed), searched "
                   f"among {copies['database']} images of the collection: how often the source "
                   "comes first (recall@1, with a 95 % interval over the images copied) or in the "
                   f"first five.{same}")
    if evaluation and "retrieval" in evaluation:
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
    else:
        st.caption("Not measured yet: how often an edited copy of an image finds its source, "
                   "and (with labelled sub-folders) retrieval precision and mAP, for these "
                   "features against raw pixels, PCA and pHash.")
    one_class = st.checkbox("Include one-class anomaly detection (trains one model per label)")
    if st.button("Run evaluation", icon=":material/analytics:"):
        start_job(ws, "evaluate", name, ["--one-class"] if one_class else [])


split_metrics()
try:
    table, count = per_image(str(ws.root), name, record.fingerprint, evaluate.PAGE_SAMPLE)
    cache = store_dir(ws, Path(data.images).resolve(), data.image_size, data.fit) / "images.u8"
    images = pixels(str(ws.root), data.images, data.image_size, data.fit, cache.stat().st_size)
except FileNotFoundError:
    st.warning("The images this model was trained on are no longer scanned in this workspace; "
               f"rescan `{data.images}` on the Collection page.")
    st.stop()
against_pca(table)
test_rows = table[table["split"] == "test"]
st.subheader("Originals and reconstructions")
st.caption("Left: the image as the model sees it; middle: the model's reconstruction; right: "
           "PCA's of the same size. "
           + ("Test-split images." if len(test_rows) else "No test split: images from the whole "
                                                         "collection."))
show_pairs((test_rows if len(test_rows) else table).sort_values("sha1").head(8), images)
st.subheader("Worst reconstructed")
st.caption("The images the model redraws worst (highest MSE): often the odd ones out, or a kind "
           "of image the model has seen too little of."
           + (f" Among a sample of {len(table):,} of the {count:,} images; the Anomalies page "
              "ranks every image." if len(table) < count else ""))
show_pairs(table.sort_values("mse", ascending=False).head(8), images)
baselines()
