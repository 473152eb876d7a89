"""A classifier on top of a trained encoder: the encoder plus a dense head, trained in two phases.

Phase 1 ("head") trains only the head with the encoder frozen, so the randomly initialised head
cannot wreck the encoder's features with large early gradients. Phase 2 ("finetune") unfreezes
the encoder's convolutions and dense layers and trains everything at a lower learning rate.
BatchNormalization layers stay frozen (inference mode, fixed statistics) in both phases: their
statistics were estimated on the whole collection by the autoencoder, and re-estimating them
from small classifier batches is the classic way fine-tuning loses accuracy (keras-io, "Transfer
learning & fine-tuning").

Model selection and early stopping look at the validation split only; the test split is
predicted once, after the model is chosen. The result lives in ``models/<name>/classifier/``:
``classifier-<id>.keras``, ``history-head.csv``, ``history-finetune.csv`` and
``classifier.json`` (labels, settings, metrics), written last as the commit point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from . import images as images_lib
from . import model as model_lib
from . import registry
from .collection import Collection
from .config import ClassifierConfig
from .errors import NotFoundError, UsageError
from .feed import gather, iter_batches
from .loop import EarlyStopping, run_epochs, set_seed
from .progress import ProgressFn, report
from .workspace import Workspace, read_json

HEAD_PREFIX = "head_"  # every layer of the head is named head_*; everything else is the encoder
OUTPUT = "head_output"
PHASES = ("head", "finetune")
EXAMPLES = 8  # right and wrong test predictions kept for the report


# -- the model --------------------------------------------------------------------------------
def build_classifier(autoencoder: keras.Model, n_classes: int, head=(128,),
                     dropout: float = 0.3) -> keras.Model:
    """Encoder (sharing the autoencoder's layers and weights) + dense head + softmax.

    Pure Keras layers, so the saved file loads in safe mode; the softmax runs in float32.
    """
    if n_classes < 2:
        raise UsageError(f"a classifier needs at least 2 classes, got {n_classes}")
    x = autoencoder.get_layer(model_lib.BOTTLENECK).output
    for i, units in enumerate(head, 1):
        x = layers.Dense(units, name=f"{HEAD_PREFIX}dense{i}")(x)
        x = layers.ReLU(name=f"{HEAD_PREFIX}relu{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout{i}")(x)
    if dropout and not head:
        x = layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout0")(x)
    out = layers.Dense(n_classes, activation="softmax", dtype="float32", name=OUTPUT)(x)
    return keras.Model(autoencoder.input, out, name="fext_classifier")


def encoder_layers(model: keras.Model) -> list:
    return [lay for lay in model.layers if not lay.name.startswith(HEAD_PREFIX)
            and not isinstance(lay, layers.InputLayer)]


def head_layers(model: keras.Model) -> list:
    return [lay for lay in model.layers if lay.name.startswith(HEAD_PREFIX)]


def set_phase(model: keras.Model, phase: str, learning_rate: float) -> keras.Model:
    """Freeze or unfreeze the encoder for `phase`, then recompile.

    Keras reads `trainable` when the train function is built, so a change only takes effect
    after `compile`; a fresh optimizer also starts the new phase without stale moments.
    """
    if phase not in PHASES:
        raise UsageError(f"phase must be one of {PHASES}, got {phase!r}")
    for layer in encoder_layers(model):
        frozen = phase == "head" or isinstance(layer, layers.BatchNormalization)
        layer.trainable = not frozen
    for layer in head_layers(model):
        layer.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# -- data ---------------------------------------------------------------------------------------
@dataclass
class Split:
    """Cache rows of one split's labelled images, their class indices and manifest entries."""

    rows: np.ndarray
    y: np.ndarray
    items: object  # pandas DataFrame: path, label, ...

    def __len__(self) -> int:
        return len(self.rows)


def labelled_splits(coll: Collection) -> tuple[list[str], dict[str, Split], list[str]]:
    """Labels (sorted), the train/val/test splits of labelled images, and notes for the user.

    Images at the folder's top level have no label: they are left out, with a note.
    """
    items = coll.items()
    unlabelled = int((items["label"] == "").sum())
    labels = coll.labels()
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise UsageError(f"a classifier needs images in at least 2 labelled sub-folders of "
                         f"{coll.root} (one sub-folder per label); found {found}")
    index = {lab: i for i, lab in enumerate(labels)}
    splits = {}
    for name in ("train", "val", "test"):
        df = coll.items(name)
        df = df[df["label"] != ""].reset_index(drop=True)
        splits[name] = Split(df["row"].to_numpy(np.int64),
                             df["label"].map(index).to_numpy(np.int64), df)
    notes = []
    if unlabelled:
        notes.append(f"{unlabelled} image(s) at the top level of the folder have no label and "
                     "were ignored")
    trained_on = set(splits["train"].items["label"])
    if len(trained_on) < 2:
        raise UsageError(f"the training split of {coll.root} holds fewer than 2 labels; "
                         "add images to the sub-folders")
    missing = [lab for lab in labels if lab not in trained_on]
    if missing:
        notes.append(f"no training images for label(s) {', '.join(missing)}: they cannot be learned")
    if len(splits["val"]) == 0:
        notes.append("no validation images: model selection and early stopping use the training "
                     "figures instead")
    return labels, splits, notes


def predict_probs(model: keras.Model, images: np.ndarray, rows: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
    """Class probabilities of cache `rows`, in inference mode (no dropout)."""
    n_classes = model.output.shape[-1]
    out = np.zeros((len(rows), n_classes), np.float32)
    for start, x in iter_batches(images, rows, batch_size):
        out[start:start + len(x)] = np.asarray(model.predict_on_batch(x), np.float32)
    return out


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """Cross-entropy loss and accuracy of predicted probabilities against class indices."""
    p = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"loss": float(-np.log(p).mean()), "accuracy": float((probs.argmax(1) == y).mean())}


# -- training -----------------------------------------------------------------------------------
class Selector(EarlyStopping):
    """Early stopping on the monitored validation figure, keeping the best weights across both
    phases (patience counts within a phase). With accuracy monitored, ties (frequent on small
    validation sets) go to the lower loss.
    """

    def __init__(self, monitor: str, use_val: bool, patience: int):
        self.prefix = "val_" if use_val else ""
        self.monitor = monitor
        super().__init__(self.rank, patience)
        self.weights = None
        self.phase, self.epoch, self.row = "", 0, {}

    @property
    def monitored(self) -> str:
        """The figure actually compared: the validation one, or the training one without val."""
        return self.prefix + self.monitor.removeprefix("val_")

    def rank(self, row: dict) -> tuple:
        loss = row[self.prefix + "loss"]
        if self.monitor == "val_accuracy":
            return (row[self.prefix + "accuracy"], -loss)
        return (-loss,)

    def keep_if_best(self, model: keras.Model, row: dict) -> bool:
        """Count epoch `row`; keep the model's weights if it is the best so far."""
        if not self.offer(row):
            return False
        self.weights = model.get_weights()
        self.phase, self.epoch, self.row = row["phase"], row["phase_epoch"], row
        return True


def run_phase(model: keras.Model, phase: str, images: np.ndarray, train: Split, val: Split,
              cfg: ClassifierConfig, selector: Selector, progress: ProgressFn,
              epoch_offset: int = 0) -> list[dict]:
    """One phase: set trainable, recompile, then the shared training loop with early stopping.

    Leaves the model at its last epoch's weights (the selector holds the best ones).
    """
    epochs = cfg.head_epochs if phase == "head" else cfg.finetune_epochs
    lr = cfg.learning_rate if phase == "head" else cfg.finetune_learning_rate
    set_phase(model, phase, lr)
    selector.wait = 0
    history: list[dict] = []

    def validate(m) -> dict:
        v = scores(predict_probs(m, images, val.rows), val.y)
        return {"val_loss": v["loss"], "val_accuracy": v["accuracy"]}

    def on_epoch(row: dict) -> bool:
        row.update(phase=phase, phase_epoch=row["epoch"] - epoch_offset)
        history.append(row)
        selector.keep_if_best(model, row)
        return selector.stop

    run_epochs(model, images, train.rows, epochs=epochs, batch_size=cfg.batch_size,
               seed=cfg.seed + PHASES.index(phase) * 7919, on_epoch=on_epoch, progress=progress,
               targets=train.y, validate=validate if len(val) else None, stage=phase,
               first_epoch=epoch_offset + 1)
    return history


def fit(autoencoder: keras.Model, images: np.ndarray, labels: list[str], splits: dict,
        cfg: ClassifierConfig, progress: ProgressFn | None = None):
    """Both phases on the train split, selection on val; returns (best model, histories, selector)."""
    progress = report(progress)
    set_seed(cfg.seed)
    model = build_classifier(autoencoder, len(labels), cfg.head, cfg.dropout)
    selector = Selector(cfg.monitor, use_val=len(splits["val"]) > 0, patience=cfg.patience)
    histories = {"head": run_phase(model, "head", images, splits["train"], splits["val"], cfg,
                                   selector, progress)}
    model.set_weights(selector.weights)  # fine-tune from the best head, not the last one
    histories["finetune"] = []
    if cfg.finetune_epochs:
        histories["finetune"] = run_phase(model, "finetune", images, splits["train"],
                                          splits["val"], cfg, selector, progress,
                                          epoch_offset=len(histories["head"]))
    model.set_weights(selector.weights)
    return model, histories, selector


# -- evaluation ---------------------------------------------------------------------------------
def classification_report(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and their averages (scikit-learn's)."""
    from sklearn.metrics import classification_report as sk_report

    idx = list(range(len(labels)))
    rep = sk_report(y, pred, labels=idx, target_names=labels, output_dict=True, zero_division=0)
    per_class = [{"label": lab, "precision": rep[lab]["precision"], "recall": rep[lab]["recall"],
                  "f1": rep[lab]["f1-score"], "support": int(rep[lab]["support"])}
                 for lab in labels]
    averages = {k: {"precision": rep[k]["precision"], "recall": rep[k]["recall"],
                    "f1": rep[k]["f1-score"], "support": int(rep[k]["support"])}
                for k in ("macro avg", "weighted avg") if k in rep}
    return {"accuracy": float((y == pred).mean()) if len(y) else None,
            "per_class": per_class, "averages": averages}


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts: rows are true labels, columns predicted labels, both in `labels` order."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y, pred, labels=list(range(n_classes))).astype(int).tolist()


def examples(split: Split, probs: np.ndarray, labels: list[str], n: int = EXAMPLES) -> dict:
    """The most confident right predictions and the most confident mistakes."""
    pred, conf = probs.argmax(1), probs.max(1)
    out = {}
    for kind, mask in (("right", pred == split.y), ("wrong", pred != split.y)):
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-conf[idx], kind="stable")][:n]
        out[kind] = [{"path": split.items["path"].iloc[i], "label": labels[split.y[i]],
                      "predicted": labels[pred[i]], "confidence": float(conf[i])} for i in idx]
    return out


def evaluate_once(model: keras.Model, images: np.ndarray, test: Split, labels: list[str]) -> dict:
    """The one and only evaluation on the test split, after the model has been chosen."""
    if len(test) == 0:
        return {"images": 0}
    probs = predict_probs(model, images, test.rows)
    pred = probs.argmax(1)
    return {"images": int(len(test)), **scores(probs, test.y),
            "report": classification_report(test.y, pred, labels),
            "confusion_matrix": confusion(test.y, pred, len(labels)),
            "examples": examples(test, probs, labels)}


def baseline(images: np.ndarray, splits: dict, dim: int, seed: int = 0) -> dict:
    """Logistic regression on PCA features of the pixels, on the same splits.

    PCA keeps `dim` components (the encoder's feature size); the regularisation C is chosen on
    the validation split, exactly as the classifier is, and the test split is scored once.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, val, test = splits["train"], splits["val"], splits["test"]
    x_tr = gather(images, train.rows, flat=True)
    n = min(dim, len(x_tr) - 1, x_tr.shape[1])
    pca = PCA(n_components=n, random_state=seed).fit(x_tr)
    f_tr = pca.transform(x_tr)
    f_val = pca.transform(gather(images, val.rows, flat=True)) if len(val) else f_tr
    y_val = val.y if len(val) else train.y
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(f_tr, train.y)
        acc = float((clf.predict(f_val) == y_val).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    out = {"method": f"PCA-{n} + logistic regression", "C": c, "val_accuracy": acc}
    if len(test):
        out["test_accuracy"] = float((clf.predict(pca.transform(gather(images, test.rows, flat=True)))
                                      == test.y).mean())
    return out


# -- the whole job ------------------------------------------------------------------------------
def classifier_dir(ws: Workspace, name: str) -> Path:
    return ws.model_dir(name) / "classifier"


def train_classifier(ws: Workspace, name: str, images: str | Path | None = None,
                     cfg: ClassifierConfig | None = None, progress: ProgressFn | None = None,
                     out_dir: Path | None = None, with_baseline: bool = True) -> dict:
    """Train a classifier on the encoder of autoencoder `name`; returns the saved result.

    `images` defaults to the autoencoder's training folder; decoding settings (size, fit,
    split fractions) are always the autoencoder's. `out_dir` defaults to
    ``models/<name>/classifier`` (experiments keep one folder per configuration).
    """
    cfg = (cfg or ClassifierConfig()).validate()
    progress = report(progress)
    with ws.lock(name):
        autoencoder, record = registry.load(ws, name)
        data = record.config.data
        coll = Collection.for_data(ws, data, images, progress)
        labels, splits, notes = labelled_splits(coll)
        model, histories, selector = fit(autoencoder, coll.images, labels, splits, cfg, progress)
        progress("evaluate", 0, 1)
        metrics = {
            "images": {s: int(len(splits[s])) for s in splits},
            "selected": {"phase": selector.phase, "epoch": selector.epoch,
                         "monitor": selector.monitored},
            "val": {k: selector.row[k] for k in ("val_loss", "val_accuracy") if k in selector.row},
            "epochs_run": {p: len(h) for p, h in histories.items()},
            "test": evaluate_once(model, coll.images, splits["test"], labels),
        }
        progress("evaluate", 1, 1)
        if with_baseline:
            progress("baseline", 0, 1)
            metrics["baseline"] = baseline(coll.images, splits, record.config.model.latent_dim,
                                           cfg.seed)
            progress("baseline", 1, 1)
        result = {"model": name, "autoencoder": record.fingerprint, "labels": labels,
                  "settings": cfg.to_dict(), "notes": notes,
                  "data": {**dataclasses.asdict(data), "images": str(coll.root)},
                  "collection": coll.fingerprint,
                  "metrics": metrics}
        return publish(out_dir or classifier_dir(ws, name), model, histories, result)


def publish(out: Path, model: keras.Model, histories: dict, result: dict) -> dict:
    """Save model and curves, then classifier.json (the commit point), then drop old files."""
    return registry.publish(out, "classifier", model.save, "classifier.json", result,
                            {f"history-{phase}.csv": rows for phase, rows in histories.items()})


def read_result(ws: Workspace, name: str, out_dir: Path | None = None) -> dict | None:
    """The saved classifier.json of model `name`, or None when there is no finished classifier."""
    out = out_dir or classifier_dir(ws, name)
    result = read_json(out / "classifier.json")
    if not result or not (out / result.get("model_file", "-")).is_file():
        return None
    return result


def read_histories(out: Path) -> dict[str, list[dict]]:
    """The learning curves of both phases, as saved next to the model."""
    import pandas as pd

    curves = {}
    for phase in PHASES:
        path = out / f"history-{phase}.csv"
        curves[phase] = pd.read_csv(path).to_dict("records") if path.is_file() and \
            path.stat().st_size > 0 and len(path.read_text().splitlines()) > 1 else []
    return curves


# -- inference ----------------------------------------------------------------------------------
class Classifier:
    """A saved classifier, ready to label images decoded exactly as in training."""

    def __init__(self, model: keras.Model, result: dict):
        self.model, self.result = model, result
        self.labels: list[str] = result["labels"]
        self.image_size, self.fit = result["data"]["image_size"], result["data"]["fit"]

    @classmethod
    def open(cls, ws: Workspace, name: str, out_dir: Path | None = None) -> Classifier:
        out = out_dir or classifier_dir(ws, name)
        result = read_result(ws, name, out)
        if result is None:
            raise NotFoundError(f"no classifier for model {name!r} in {ws.root}; train one "
                                    f"with: python -m fext classify --name {name}")
        return cls(model_lib.load(out / result["model_file"]), result)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) uint8 images -> (n, classes) probabilities."""
        x = images_lib.to_model_input(batch)
        return np.asarray(self.model.predict_on_batch(x), np.float64)

    def predict(self, source: str | Path | bytes) -> dict:
        """The predicted label of one image file (or its bytes) and every label's probability.

        Raises ImageError (a ValueError) with the reason when the file is not a usable image.
        """
        probs = self.probabilities(images_lib.load(source, self.image_size, self.fit)[None])[0]
        order = np.argsort(-probs, kind="stable")
        return {"label": self.labels[order[0]], "confidence": float(probs[order[0]]),
                "probabilities": {self.labels[i]: float(probs[i]) for i in order}}
