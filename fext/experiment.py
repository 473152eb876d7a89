"""Experiments: several classifier configurations on one folder, compared in one table.

A configuration is a set of settings (encoder preset x head sizes x dropout x ...). Each one gets
its autoencoder (an existing model with exactly the same settings on the same collection state
is reused, otherwise one is trained under ``<EXP>-ae-<digest>``), then its classifier, kept in
``models/<EXP>/configs/<id>/``. The comparison, with the best configuration marked by its
validation score (accuracy, ties to the lower loss), is ``models/<EXP>/experiment.json``; the
test split figures are shown but never used to choose.

Settings are given as a grid (``preset=small,medium head=64;128,64 dropout=0.2,0.5``: values
separated by ',' except for head, whose options are separated by ';' and sizes by ','), or in a
JSON/TOML spec file with ``images``, ``base`` (fixed settings), ``grid`` and/or ``configs``
(an explicit list of settings dicts). Every setting of the autoencoder's data, model and
training and of the classifier can be varied; their names, parsers and checks are the
configs' own (fext.config). Keras is imported only when something is trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from pathlib import Path

from . import registry
from .collection import Collection
from .config import (
    ClassifierConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    describe,
    parse_head,
)
from .errors import NotFoundError, UsageError
from .progress import ProgressFn, report
from .workspace import Workspace, check_name, read_json, write_json

SECTIONS = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig),
            ("classifier", ClassifierConfig))
RENAMED = {("classifier", "learning_rate"): "head_learning_rate"}  # the autoencoder's keeps the name


def _settings() -> dict[str, tuple]:
    """setting -> (parser, the (section, field) pairs it sets), read from the configs: a name
    both trainings have (batch_size, patience, seed) sets both."""
    out: dict[str, tuple] = {}
    for section, cls in SECTIONS:
        for f in describe(cls):
            if f.name == "images":  # the experiment's folder, given once
                continue
            key = RENAMED.get((section, f.name), f.name)
            parse, places = out.get(key, (parse_head if isinstance(f.default, tuple)
                                          else type(f.default), ()))
            out[key] = (parse, places + ((section, f.name),))
    return out


SETTINGS = _settings()
SHOWN = ("preset", "image_size", "latent_dim", "head", "dropout")  # keys in a configuration's id


def _key(name: str) -> str:
    key = name.strip().replace("-", "_")
    if key not in SETTINGS:
        raise UsageError(f"unknown setting {name!r}; use one of {', '.join(SETTINGS)}")
    return key


def _value(key: str, value):
    """A setting's value from the command line (text) or a spec file (already typed)."""
    parse = SETTINGS[key][0]
    if key == "head" and isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    try:
        return parse(value)
    except (TypeError, ValueError):
        raise UsageError(f"invalid value {value!r} for {key}") from None


def parse_grid(items: list[str]) -> dict[str, list]:
    """['preset=small,medium', 'head=64;128,64'] -> {'preset': [...], 'head': [(64,), (128, 64)]}."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"grid entries look like key=v1,v2 (head=64;128,64), got {item!r}")
        name, values = item.split("=", 1)
        key = _key(name)
        options = values.split(";") if key == "head" else values.split(",")
        grid[key] = [_value(key, v) for v in options if v.strip() or key == "head"]
        if not grid[key]:
            raise UsageError(f"no values given for {key}")
    return grid


def expand(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def load_spec(path: str | Path) -> dict:
    """A JSON or TOML experiment spec: images, base, grid and/or configs."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"experiment spec not found: {path}")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            spec = tomllib.loads(path.read_text())
        else:
            spec = json.loads(path.read_text())
    except ValueError as e:
        raise UsageError(f"cannot read experiment spec {path}: {e}") from None
    unknown = set(spec) - {"images", "base", "grid", "configs"}
    if unknown:
        raise UsageError(f"unknown keys in {path.name}: {', '.join(sorted(unknown))}; "
                         "use images, base, grid, configs")
    return spec


def configurations(base: dict, grid: dict | None = None, configs: list[dict] | None = None) -> list[dict]:
    """The settings of each configuration: base, overridden by a grid point or an explicit entry."""
    base = {_key(k): _value(_key(k), v) for k, v in base.items()}
    points = expand({_key(k): [_value(_key(k), v) for v in vs] for k, vs in (grid or {}).items()})
    points += [{_key(k): _value(_key(k), v) for k, v in c.items()} for c in (configs or [])]
    out = [{**base, **p} for p in points] or [dict(base)]
    if len(out) > 64:
        raise UsageError(f"{len(out)} configurations: keep an experiment to 64 at most")
    return out


def split_settings(images: str, settings: dict) -> tuple[RunConfig, ClassifierConfig]:
    """One configuration's settings as the autoencoder's RunConfig and the ClassifierConfig,
    both checked."""
    given: dict[str, dict] = {section: {} for section, _ in SECTIONS}
    given["data"]["images"] = images
    for key, value in settings.items():
        for section, name in SETTINGS[key][1]:
            given[section][name] = value
    run = RunConfig(data=DataConfig(**given["data"]), model=ModelConfig(**given["model"]),
                    train=TrainConfig(**given["train"]))
    return run.validate(), ClassifierConfig(**given["classifier"]).validate()


def config_id(settings: dict) -> str:
    """A short readable id: the shown settings, plus a digest when other settings vary."""
    shown = {"preset": str, "image_size": lambda v: f"{v}px", "latent_dim": lambda v: f"d{v}",
             "head": lambda v: "h" + ("x".join(map(str, v)) or "0"),
             "dropout": lambda v: f"dr{v:g}"}
    parts = [shown[k](settings[k]) for k in SHOWN if k in settings]
    rest = {k: v for k, v in settings.items() if k not in SHOWN}
    if rest:
        parts.append(hashlib.sha1(json.dumps(rest, sort_keys=True, default=list).encode())
                     .hexdigest()[:6])
    return "-".join(parts) or "base"


# -- autoencoders ------------------------------------------------------------------------------
def find_autoencoder(ws: Workspace, run: RunConfig, collection: str) -> str | None:
    """A finished model with exactly these settings, trained on this collection state."""
    want = run.to_dict()
    for record in registry.list_records(ws):
        if record.config.to_dict() == want and record.collection == collection:
            return record.name
    return None


def autoencoder_for(ws: Workspace, exp: str, run: RunConfig, progress: ProgressFn) -> tuple[str, bool]:
    """(model name, reused?): an existing matching autoencoder, or a newly trained one."""
    from .train import train

    d = run.data
    coll = Collection.sync(ws, d.images, d.image_size, d.fit, d.val_fraction, d.test_fraction,
                           progress)
    run = dataclasses.replace(run, data=dataclasses.replace(d, images=str(coll.root)))
    found = find_autoencoder(ws, run, coll.fingerprint)
    if found:
        return found, True
    digest = hashlib.sha1(json.dumps(run.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    name = check_name(f"{exp[:48]}-ae-{digest}")
    train(ws, name, run, progress, fresh=True)
    return name, False


# -- the experiment -----------------------------------------------------------------------------
def experiment_dir(ws: Workspace, exp: str) -> Path:
    return ws.model_dir(exp)


def _tagged(progress: ProgressFn, i: int, n: int, cid: str) -> ProgressFn:
    """Progress of one configuration, its stage prefixed and its epoch rows tagged with its id."""
    def tagged(stage, done, total, **info):
        if "epoch_logs" in info:
            info["epoch_logs"] = {**info["epoch_logs"], "config": cid}
        progress(f"{i + 1}/{n} {cid}: {stage}", done, total, **info)
    return tagged


def run_experiment(ws: Workspace, exp: str, images: str | Path, configs: list[dict],
                   progress: ProgressFn | None = None) -> dict:
    """Train every configuration, compare them on validation, save experiment.json. Every
    configuration is checked before anything is trained (or Keras imported)."""
    progress = report(progress)
    if not configs:
        raise UsageError("an experiment needs at least one configuration")
    if not Path(images).expanduser().is_dir():
        raise NotFoundError(f"image folder not found: {images}")
    if check_name(exp) in registry.names(ws):
        raise UsageError(f"{exp!r} is the name of a trained model; give the experiment another name")
    ids = [config_id(c) for c in configs]
    if len(set(ids)) != len(ids):
        raise UsageError("two configurations of the experiment have the same settings")
    plans = [(cid, *split_settings(str(images), c)) for cid, c in zip(ids, configs)]
    from .classifier import train_classifier

    out = experiment_dir(ws, exp)
    rows = []
    with ws.lock(exp):
        for i, (cid, run, clf) in enumerate(plans):
            tagged = _tagged(progress, i, len(plans), cid)
            t0 = time.time()
            ae, reused = autoencoder_for(ws, exp, run, tagged)
            folder = out / "configs" / cid
            result = train_classifier(ws, ae, images, clf, tagged, out_dir=folder,
                                      with_baseline=False)
            m = result["metrics"]
            rows.append({"id": cid, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in configs[i].items()},
                         "autoencoder": ae, "reused_autoencoder": reused,
                         "val_accuracy": m["val"].get("val_accuracy"),
                         "val_loss": m["val"].get("val_loss"),
                         "test_accuracy": m["test"].get("accuracy"),
                         "selected": m["selected"], "labels": result["labels"],
                         "seconds": round(time.time() - t0, 1)})
        best = best_config(rows)
        for r in rows:
            r["best"] = r["id"] == best
        summary = {"name": exp, "images": str(Path(images).expanduser().resolve()),
                   "created": time.strftime("%Y-%m-%d %H:%M:%S"), "best": best,
                   "selection": "highest validation accuracy, ties to the lowest validation loss",
                   "configs": rows}
        write_json(out / "experiment.json", summary)
    return summary


def best_config(rows: list[dict]) -> str | None:
    """The configuration with the best validation score (never the test score)."""
    scored = [r for r in rows if r.get("val_accuracy") is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["val_accuracy"], -(r["val_loss"] or 0.0)))["id"]


def experiments(ws: Workspace) -> list[str]:
    """Names of finished experiments in the workspace, newest first."""
    base = ws.root / "models"
    found = []
    for p in base.glob("*/experiment.json") if base.is_dir() else []:
        info = read_json(p, {})
        found.append((info.get("created", ""), p.parent.name))
    return [n for _, n in sorted(found, reverse=True)]


def curves(ws: Workspace, exp: str) -> list[dict]:
    """Every configuration's learning curves (both phases), tagged with its id, for overlays."""
    from .classifier import read_histories

    summary = read_json(experiment_dir(ws, exp) / "experiment.json", {})
    out = []
    for r in summary.get("configs", []):
        for phase, history in read_histories(experiment_dir(ws, exp) / "configs" / r["id"]).items():
            out += [{**row, "config": r["id"], "phase": phase} for row in history]
    return out
