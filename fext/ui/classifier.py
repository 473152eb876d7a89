"""Classifier page: train a classifier on a model's encoder (background job), read its report,
confusion matrix and examples, compare experiments, and label an uploaded image."""

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from fext import jobs, registry
from fext.classifier import classifier_dir, read_histories, read_result
from fext.collection import Collection
from fext.config import MONITORS, ClassifierConfig, DataConfig, help_of, parse_head
from fext.errors import ImageError, UsageError
from fext.experiment import curves as experiment_curves
from fext.experiment import experiments
from fext.ui.common import header, job_progress, model_picker, start_job, thumb, workspace
from fext.workspace import Workspace, read_json

C = ClassifierConfig()  # the defaults, from their one source


# -- training -----------------------------------------------------------------------------------
def label_counts(ws: Workspace, folder: str, data: DataConfig) -> pd.Series | None:
    """Images per label of `folder` as last scanned at the model's size (None if never scanned)."""
    try:
        items = Collection.open(ws, folder, data.image_size, data.fit).items()
    except FileNotFoundError:
        return None
    return items[items["label"] != ""]["label"].value_counts().sort_index()


PHASES = {"head": "phase 1 · head only (encoder frozen)",
          "finetune": "phase 2 · fine-tuning everything"}  # a classify job's stages


def train_form(ws: Workspace, name: str, data: DataConfig) -> None:
    """Settings for a new classifier; starts `python -m fext classify` in the background."""
    with st.form("classify"):
        c1, c2, c3 = st.columns([3, 2, 1])
        folder = c1.text_input("Labelled image folder (on this server)", value=data.images,
                               help="One sub-folder per label. Images at the top level are ignored.")
        head = c2.text_input("Head sizes", value=",".join(map(str, C.head)) or "none",
                             help=help_of(ClassifierConfig, "head"))
        dropout = c3.number_input("Dropout", 0.0, 0.9, C.dropout, 0.05,
                                  help=help_of(ClassifierConfig, "dropout"))
        c1, c2, c3 = st.columns(3)
        head_epochs = c1.number_input("Phase 1 epochs (head only)", 1, 200, C.head_epochs,
                                      help=help_of(ClassifierConfig, "head_epochs"))
        finetune_epochs = c2.number_input("Phase 2 epochs (fine-tune)", 0, 200, C.finetune_epochs,
                                          help=help_of(ClassifierConfig, "finetune_epochs"))
        monitor = c3.selectbox("Select and stop on", MONITORS, index=MONITORS.index(C.monitor),
                               help=help_of(ClassifierConfig, "monitor"))
        submitted = st.form_submit_button("Train classifier", type="primary")
    if not submitted:
        return
    try:
        ClassifierConfig(head=parse_head(head), dropout=dropout, head_epochs=head_epochs,
                         finetune_epochs=finetune_epochs, monitor=monitor).validate()
    except UsageError as e:
        st.error(str(e))
        return
    if not folder or not Path(folder).expanduser().is_dir():
        st.error(f"Folder not found on the server: `{folder}`.")
        return
    counts = label_counts(ws, str(Path(folder).expanduser()), data)
    if counts is not None and len(counts) < 2:
        st.error("A classifier needs at least two labelled sub-folders (one per label); "
                 f"`{folder}` has {len(counts)}.")
        return
    start_job(ws, "classify", name, ["--images", folder, "--head", head or "none",
                                     "--dropout", dropout, "--head-epochs", head_epochs,
                                     "--finetune-epochs", finetune_epochs, "--monitor", monitor])


# -- the report ---------------------------------------------------------------------------------
def show_report(ws: Workspace, name: str, result: dict) -> None:
    m, test = result["metrics"], result["metrics"]["test"]
    for note in result.get("notes", []):
        st.caption(f"Note: {note}")
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{test['accuracy']:.2%}" if test.get("images") else "–")
    cols[1].metric("Validation accuracy", f"{m['val']['val_accuracy']:.2%}"
                   if "val_accuracy" in m["val"] else "–")
    base = m.get("baseline", {})
    cols[2].metric("Baseline (PCA + logistic regression)",
                   f"{base['test_accuracy']:.2%}" if "test_accuracy" in base else "–")
    cols[3].metric("Chosen", f"{m['selected']['phase']} · epoch {m['selected']['epoch']}")
    st.caption(f"{len(result['labels'])} labels · {m['images']['train']} training, "
               f"{m['images']['val']} validation, {m['images']['test']} test images · head "
               f"{result['settings']['head'] or 'none'} · dropout {result['settings']['dropout']} · "
               f"trained {result.get('trained_at', '')}. The model is chosen on validation; the "
               "test split is evaluated once.")
    if not test.get("images"):
        st.info("The collection has no test images, so there is no report.")
    else:
        left, right = st.columns(2)
        with left:
            st.subheader("Per class")
            rep = pd.DataFrame(test["report"]["per_class"])
            st.dataframe(rep, hide_index=True, width="stretch")
        with right:
            st.subheader("Confusion matrix")
            labels = result["labels"]
            fig = px.imshow(test["confusion_matrix"], x=labels, y=labels, text_auto=True,
                            color_continuous_scale="Blues", aspect="auto",
                            labels={"x": "predicted", "y": "true", "color": "images"})
            fig.update_xaxes(type="category")
            fig.update_yaxes(type="category")
            fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), height=360)
            st.plotly_chart(fig, width="stretch")
    show_curves(classifier_dir(ws, name))
    if test.get("images"):
        show_examples(Path(result["data"]["images"]), test["examples"])


def show_curves(folder: Path) -> None:
    rows = [r for phase_rows in read_histories(folder).values() for r in phase_rows]
    if not rows:
        return
    st.subheader("Learning curves")
    df = pd.DataFrame(rows)
    left, right = st.columns(2)
    for col, metric in ((left, "accuracy"), (right, "loss")):
        keep = [c for c in (metric, f"val_{metric}") if c in df]
        long = df.melt(id_vars=["epoch", "phase"], value_vars=keep, var_name="curve",
                       value_name="value")
        fig = px.line(long, x="epoch", y="value", color="curve", line_dash="phase", markers=True,
                      height=300, labels={"value": metric})
        fig.update_layout(margin=dict(l=10, r=10, t=10, b=10))
        col.plotly_chart(fig, width="stretch")


def show_examples(root: Path, examples: dict) -> None:
    st.subheader("Test examples")
    for kind, title in (("right", "Right (most confident)"), ("wrong", "Wrong (most confident)")):
        shown = examples.get(kind, [])
        st.markdown(f"**{title}**")
        if not shown:
            st.caption("none")
            continue
        cols = st.columns(8)
        for i, ex in enumerate(shown):
            with cols[i % 8]:
                st.image(thumb(str(root / ex["path"]), 96), width="stretch",
                         caption=f"{ex['label']} → {ex['predicted']} ({ex['confidence']:.2f})")


# -- experiments --------------------------------------------------------------------------------
def show_experiments(ws: Workspace) -> None:
    st.subheader("Experiments")
    names = experiments(ws)
    if not names:
        st.caption("No experiment yet. Compare configurations from a terminal, e.g. "
                   "`python -m fext experiment --images DIR --name exp1 --grid preset=small,medium "
                   "'head=64;128,64' dropout=0.2,0.5`.")
        return
    exp = st.selectbox("Experiment", names)
    summary = read_json(ws.model_dir(exp) / "experiment.json", {})
    table = pd.DataFrame([{"best": "★" if r["best"] else "", "config": r["id"],
                           **{k: str(v) for k, v in r["settings"].items()},
                           "val accuracy": r["val_accuracy"], "val loss": r["val_loss"],
                           "test accuracy": r["test_accuracy"],
                           "chosen": f"{r['selected']['phase']} {r['selected']['epoch']}",
                           "autoencoder": r["autoencoder"], "seconds": r["seconds"]}
                          for r in summary.get("configs", [])])
    st.caption(f"`{summary.get('images', '')}` · {summary.get('created', '')} · best by "
               f"{summary.get('selection', 'validation')}")
    st.dataframe(table, hide_index=True, width="stretch")
    df = pd.DataFrame(experiment_curves(ws, exp))
    if len(df) and "val_accuracy" in df:
        fig = px.line(df, x="epoch", y="val_accuracy", color="config", line_dash="phase",
                      markers=True, height=340, title="Validation accuracy")
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, width="stretch")


# -- prediction ---------------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading classifier…")
def classifier(root: str, name: str, model_file: str):
    """The saved classifier in memory, keyed on its model file (a retrain reloads it)."""
    from fext.classifier import Classifier
    return Classifier.open(Workspace(root), name)


def show_predict(ws: Workspace, name: str, result: dict) -> None:
    st.subheader("Label an image")
    up = st.file_uploader("Image", type=None, key="classify-upload",
                          help="Any image file: JPEG, PNG, WebP, …")
    if up is None:
        return
    try:
        out = classifier(str(ws.root), name, result["model_file"]).predict(up.getvalue())
    except ImageError as e:
        st.error(f"That file cannot be labelled: {e}. Upload a JPEG, PNG, WebP, GIF, BMP or TIFF "
                 "image.")
        return
    except (FileNotFoundError, ValueError) as e:
        st.error(f"The classifier cannot be loaded: {e}")
        return
    left, right = st.columns([1, 3])
    left.image(thumb(up.getvalue()), caption=up.name, width=160)
    right.markdown(f"Predicted label: **{out['label']}** ({out['confidence']:.1%})")
    probs = pd.DataFrame({"label": list(out["probabilities"]),
                          "probability": list(out["probabilities"].values())})
    fig = px.bar(probs, x="label", y="probability", range_y=[0, 1], height=260)
    fig.update_xaxes(type="category")
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=10))
    right.plotly_chart(fig, width="stretch")


# -- the page -----------------------------------------------------------------------------------
header("Classifier", "Train a classifier on a model's encoder (images in labelled sub-folders): "
                     "the head first, then a fine-tune of everything.")
ws = workspace()
name = model_picker(ws)
if name is None:
    st.info("There is no trained model yet. Train an autoencoder on the **Train** page first; "
            "the classifier is built on its encoder.")
    show_experiments(ws)
    st.stop()
data = registry.open_record(ws, name).config.data
running = jobs.active(ws, name, "classify")
if running is not None:
    st.subheader(f"Training a classifier on {name}")
    job_progress(running.id, PHASES, ("accuracy", "val_accuracy"), "accuracy")
else:
    last = jobs.latest(ws, name, "classify")
    committed = classifier_dir(ws, name) / "classifier.json"
    if last is not None and last.status == "failed" and (
            not committed.is_file() or last.spec.get("started", 0) > committed.stat().st_mtime):
        st.error(f"The last classifier training failed: {last.error()}")
    with st.expander("Train a classifier", expanded=read_result(ws, name) is None):
        counts = label_counts(ws, data.images, data)
        if counts is not None and len(counts) < 2:
            st.warning(f"The training folder of **{name}** has {len(counts)} labelled sub-folder(s): "
                       "a classifier needs at least two (one sub-folder per label). Choose a "
                       "labelled folder below.")
        train_form(ws, name, data)

result = read_result(ws, name)
if result is None:
    st.info(f"Model **{name}** has no classifier yet. Train one above (or with "
            f"`python -m fext classify --name {name}`).")
else:
    show_report(ws, name, result)
    show_predict(ws, name, result)
show_experiments(ws)
