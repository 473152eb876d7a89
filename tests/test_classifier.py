"""The classifier: both training phases take effect, the test split is used once, reports, predict,
the CLI, experiments, refusals, and the app page."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.corpus import shape_image
from tests.helpers import REPO, run_cli

TINY_CLF = dict(head=(8,), dropout=0.1, head_epochs=2, finetune_epochs=2, batch_size=16,
                patience=5)


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, shapes_dir):
    """The shapes collection plus one image at the top level, which has no label."""
    root = tmp_path_factory.mktemp("mixed")
    for label in ("red", "green", "blue"):
        shutil.copytree(shapes_dir / label, root / label)
    shape_image("red", 99, 32).save(root / "loose.png")
    return root


@pytest.fixture(scope="module")
def classified(trained_once, mixed_dir, tmp_path_factory):
    """(ws, name, result, rows seen by each prediction call): a tiny classifier, trained once
    in this module's own copy of the trained workspace."""
    import fext.classifier as clf
    from tests.helpers import copy_workspace

    ws, name = trained_once
    ws = copy_workspace(ws, tmp_path_factory.mktemp("classified") / "ws")
    calls = []
    original = clf.predict_probs

    def recording(model, images, rows, batch_size=256):
        calls.append(np.asarray(rows).copy())
        return original(model, images, rows, batch_size)

    clf.predict_probs = recording
    try:
        result = clf.train_classifier(ws, name, mixed_dir, clf.ClassifierConfig(**TINY_CLF))
    finally:
        clf.predict_probs = original
    return ws, name, result, calls


def _splits(ws, name, folder):
    from fext.classifier import labelled_splits
    from fext.collection import Collection
    from fext.registry import open_record

    d = dataclasses.asdict(open_record(ws, name).config.data)
    coll = Collection.sync(ws, folder, d["image_size"], d["fit"], d["val_fraction"],
                           d["test_fraction"])
    return (*labelled_splits(coll), coll.images)


def test_both_phases_take_effect(trained, mixed_dir):
    from fext.classifier import (
        ClassifierConfig,
        Selector,
        build_classifier,
        encoder_layers,
        head_layers,
        run_phase,
    )
    from fext.loop import set_seed
    from fext.progress import report
    from fext.registry import load as load_model

    ws, name = trained
    ae, _ = load_model(ws, name)
    labels, splits, _, images = _splits(ws, name, mixed_dir)
    set_seed(0)
    model = build_classifier(ae, len(labels), (8,), 0.1)
    assert [w.shape for w in model.get_layer("bottleneck").get_weights()] == \
        [w.shape for w in ae.get_layer("bottleneck").get_weights()]

    def snapshot(layers):  # trainable and non-trainable (BatchNorm statistics) weights
        return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in layers}

    def same(a, b):
        return all(np.array_equal(x, y) for k in a for x, y in zip(a[k], b[k]))

    cfg = ClassifierConfig(head=(8,), head_epochs=1, finetune_epochs=1, batch_size=16,
                           learning_rate=1e-2, finetune_learning_rate=1e-2)
    enc0, head0 = snapshot(encoder_layers(model)), snapshot(head_layers(model))
    selector = Selector(cfg.monitor, use_val=True, patience=cfg.patience)
    run_phase(model, "head", images, splits["train"], splits["val"], cfg, selector, report(None))
    enc1, head1 = snapshot(encoder_layers(model)), snapshot(head_layers(model))
    assert same(enc0, enc1), "phase 1 moved the encoder"
    assert not same(head0, head1), "phase 1 left the head unchanged"

    run_phase(model, "finetune", images, splits["train"], splits["val"], cfg, selector,
              report(None))
    enc2 = snapshot(encoder_layers(model))
    for layer in ("enc1_conv1", "enc2_conv2", "bottleneck"):
        assert not same({layer: enc1[layer]}, {layer: enc2[layer]}), f"phase 2 left {layer}"
    # BatchNorm keeps the autoencoder's statistics in both phases (frozen, inference mode)
    assert same({"enc1_bn1": enc0["enc1_bn1"]}, {"enc1_bn1": enc2["enc1_bn1"]})
    assert selector.phase in ("head", "finetune") and selector.weights is not None


def test_phase_changes_need_a_recompile(trained):
    """`set_phase` recompiles: the trainable weights the optimizer sees follow the phase."""
    from fext.classifier import build_classifier, head_layers, set_phase
    from fext.registry import load as load_model

    ws, name = trained
    model = build_classifier(load_model(ws, name)[0], 3, (8,), 0.0)
    set_phase(model, "head", 1e-3)
    head_weights = sum(len(lay.trainable_weights) for lay in head_layers(model))
    assert len(model.trainable_weights) == head_weights
    set_phase(model, "finetune", 1e-4)
    assert len(model.trainable_weights) > head_weights
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="phase"):
        set_phase(model, "everything", 1e-3)


def test_test_split_is_predicted_once_after_selection(classified, mixed_dir):
    ws, name, result, calls = classified
    _, splits, _, _ = _splits(ws, name, mixed_dir)
    test_rows = set(splits["test"].rows.tolist())
    assert test_rows, "the fixture collection must have test images"
    touching = [i for i, rows in enumerate(calls) if test_rows & set(rows.tolist())]
    assert len(touching) == 1 and touching[0] == len(calls) - 1
    assert set(calls[-1].tolist()) == test_rows
    val_rows = set(splits["val"].rows.tolist())
    assert all(set(rows.tolist()) == val_rows for rows in calls[:-1])  # selection used val only
    m = result["metrics"]
    assert m["selected"]["monitor"] == "val_accuracy"
    assert m["epochs_run"] == {"head": 2, "finetune": 2}


def test_report_confusion_matrix_and_examples(classified):
    ws, name, result, _ = classified
    labels = result["labels"]
    assert labels == ["blue", "green", "red"]
    test = result["metrics"]["test"]
    cm = np.array(test["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == test["images"] == result["metrics"]["images"]["test"]
    assert [r["label"] for r in test["report"]["per_class"]] == labels
    assert sum(r["support"] for r in test["report"]["per_class"]) == test["images"]
    assert test["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    for r in test["report"]["per_class"]:
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["f1"] <= 1
    ex = test["examples"]
    assert len(ex["right"]) == int(np.trace(cm)) or len(ex["right"]) == 8
    assert all(e["label"] == e["predicted"] for e in ex["right"])
    assert all(e["label"] != e["predicted"] for e in ex["wrong"])
    assert any("no label" in n for n in result["notes"]), result["notes"]
    assert "test_accuracy" in result["metrics"]["baseline"]
    out = ws.model_dir(name) / "classifier"
    assert (out / result["model_file"]).is_file() and (out / "history-head.csv").is_file()
    assert (out / "history-finetune.csv").is_file()
    assert json.loads((out / "classifier.json").read_text())["model_file"] == result["model_file"]


def test_predict_returns_probabilities_over_the_labels(classified, shapes_dir):
    from fext.classifier import Classifier
    from fext.errors import ImageError

    ws, name, result, _ = classified
    clf = Classifier.open(ws, name)
    out = clf.predict(shapes_dir / "green" / "green_003.png")
    assert set(out["probabilities"]) == set(result["labels"])
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["label"] == max(out["probabilities"], key=out["probabilities"].get)
    with pytest.raises(ImageError):
        clf.predict(b"not an image")


def test_one_label_is_refused_with_a_clear_message(trained, shapes_dir, tmp_path):
    from fext.classifier import train_classifier

    shutil.copytree(shapes_dir / "red", tmp_path / "only" / "red")
    ws, name = trained
    with pytest.raises(ValueError, match="needs images in at least 2 labelled sub-folders .* "
                                         "found only 'red'"):
        train_classifier(ws, name, tmp_path / "only")


def test_predict_without_a_classifier_says_how_to_train_one(trained):
    from fext.classifier import Classifier

    ws, _ = trained
    with pytest.raises(FileNotFoundError, match="python -m fext classify --name nothing"):
        Classifier.open(ws, "nothing")


def test_cli_classify_and_predict(trained, shapes_dir, tmp_path):
    ws, name = trained
    out = run_cli("classify", "--name", name, "--head", "8", "--head-epochs", "1",
                  "--finetune-epochs", "1", "--batch-size", "16", "--no-baseline", "--json",
                  workspace=ws.root)
    result = json.loads(out.stdout)
    assert result["labels"] == ["blue", "green", "red"]
    assert result["settings"]["head"] == [8] and "baseline" not in result["metrics"]
    image = tmp_path / "query.png"
    Image.open(shapes_dir / "blue" / "blue_002.png").save(image)
    pred = json.loads(run_cli("predict", "--name", name, str(image), "--json",
                              workspace=ws.root).stdout)
    assert pred["label"] in result["labels"]
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_grid_parsing():
    from fext.experiment import config_id, configurations, parse_grid

    grid = parse_grid(["preset=small,medium", "head=64;128,64", "dropout=0.2,0.5"])
    assert grid == {"preset": ["small", "medium"], "head": [(64,), (128, 64)],
                    "dropout": [0.2, 0.5]}
    configs = configurations({"epochs": "3"}, grid)
    assert len(configs) == 8 and all(c["epochs"] == 3 for c in configs)
    assert config_id(configs[-1]).startswith("medium-h128x64-dr0.5")
    with pytest.raises(ValueError, match="unknown setting"):
        parse_grid(["colour=red"])
    with pytest.raises(ValueError, match="key=v1,v2"):
        parse_grid(["preset"])


def test_experiment_compares_configurations(trained, shapes_dir, tmp_path):
    """Two configurations: one reuses the fixture's autoencoder, the other trains its own."""
    ws, name = trained
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\nhead_epochs = 1\nfinetune_epochs = 1\n\n[grid]\nhead = [[8]]\n')
    out = run_cli("experiment", "--name", "exp", "--images", str(shapes_dir), "--spec", str(spec),
                  "--grid", "latent-dim=8,4", "--preset", "small", "--image-size", "16",
                  "--epochs", "3", "--epoch-steps", "4", "--batch-size", "16", "--held-out-copies", "32",
                  "--json",
                  workspace=ws.root)
    summary = json.loads(out.stdout)
    rows = summary["configs"]
    assert [r["settings"]["latent_dim"] for r in rows] == [8, 4]
    assert rows[0]["reused_autoencoder"] and rows[0]["autoencoder"] == name
    assert not rows[1]["reused_autoencoder"] and rows[1]["autoencoder"].startswith("exp-ae-")
    assert sum(r["best"] for r in rows) == 1
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert summary["best"] == best["id"] and best["best"]
    saved = json.loads((ws.model_dir("exp") / "experiment.json").read_text())
    assert saved["best"] == summary["best"]
    from fext.experiment import curves, experiments
    assert "exp" in experiments(ws)
    assert {c["config"] for c in curves(ws, "exp")} == {r["id"] for r in rows}


def test_classifier_page(classified, monkeypatch):
    from streamlit.testing.v1 import AppTest

    ws, name, result, _ = classified
    monkeypatch.setenv("FEXT_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(REPO / "fext" / "ui" / "classifier.py"), default_timeout=120)
    at.session_state["model"] = name  # other tests add models to this workspace
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Classifier"
    assert "Test accuracy" in [m.label for m in at.metric]
    import io
    buf = io.BytesIO()
    shape_image("red", 5, 32).save(buf, "PNG")
    at.file_uploader[0].upload("query.png", buf.getvalue(), "image/png")
    at.run()
    assert not at.exception, at.exception
    assert any("Predicted label" in m.value for m in at.markdown)
    at.file_uploader[0].upload("notes.png", b"just text", "image/png")
    at.run()
    assert not at.exception
    assert any("cannot be labelled" in e.value for e in at.error)


def test_classifier_page_without_a_model(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FEXT_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(str(REPO / "fext" / "ui" / "classifier.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("no trained model" in i.value for i in at.info)
