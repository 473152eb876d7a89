"""Settings for data, model and training, saved next to every model so a run can be reproduced.

Each setting's default, choices and help text are written once, here, on its dataclass field
(`setting(...)`); the CLI's options, the app's forms and the README's option list read them
from `describe(...)`. Configs are built by keyword.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

PRESETS: dict[str, tuple[tuple[int, int], ...]] = {
    # (filters, conv layers) per block; every block ends with a 2x2 max-pool.
    "small": ((32, 2), (64, 2)),
    "medium": ((32, 2), (64, 2), (128, 2)),
    "large": ((32, 2), (64, 2), (128, 2), (256, 2)),
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
}
FITS = ("pad", "crop")
PRECISIONS = ("float32", "bfloat16")  # of inference; training is always float32 on CPU
MONITORS = ("val_accuracy", "val_loss")
AUGMENTS = ("edits", "none")  # of the autoencoder's training inputs
READOUTS = ("whiten", "raw")  # of the published features  # what the classifier selects and stops on


def setting(default, help: str, choices: tuple | None = None):
    """A dataclass field carrying its help text and allowed values (the one source of both)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def describe(cls) -> list[dataclasses.Field]:
    """The settings of a config dataclass, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def options_table(*classes) -> str:
    """The README's table of options, made from the settings themselves (a test keeps it equal)."""
    rows = ["| option | default | what it sets |", "| --- | --- | --- |"]
    for cls in classes:
        for f in describe(cls):
            default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            choices = " (" + ", ".join(f.metadata["choices"]) + ")" if f.metadata["choices"] else ""
            shown = f"`{default}`" if default != "" else "required"
            rows.append(f"| `--{f.name.replace('_', '-')}` | {shown} | {f.metadata['help']}{choices} |")
    return "\n".join(rows)


def help_of(cls, name: str) -> str:
    """The help text of one setting (for a form's tooltip)."""
    return next(f.metadata["help"] for f in describe(cls) if f.name == name)


@dataclass
class DataConfig:
    """How images become model input. The same settings are used at training and at inference."""

    images: str = setting("", "image folder; sub-folders are labels")
    image_size: int = setting(64, "square input size in pixels (a multiple of 2^blocks of the preset)")
    fit: str = setting("pad", "keep the aspect ratio by padding to a square with white, or "
                              "centre-crop", FITS)
    val_fraction: float = setting(0.1, "share of the images in the validation split (early "
                                       "stopping, model choice)")
    test_fraction: float = setting(0.1, "share of the images in the test split (only reported)")

    def validate(self) -> None:
        if not 8 <= self.image_size <= 1024:
            raise UsageError(f"image size must be between 8 and 1024 pixels, got {self.image_size}")
        if self.fit not in FITS:
            raise UsageError(f"fit must be one of {FITS}, got {self.fit!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise UsageError("validation and test fractions must be in [0, 1) and sum below 1")


@dataclass
class ModelConfig:
    """The network: a VGG-style preset and the size of the feature vector (the bottleneck)."""

    preset: str = setting("medium", "VGG-style blocks of 3x3 convolutions: small 2 blocks, "
                                    "medium 3, large 4, vgg16 VGG16's 5", tuple(PRESETS))
    latent_dim: int = setting(128, "feature vector size (the bottleneck)")

    def validate(self, image_size: int) -> None:
        if self.preset not in PRESETS:
            raise UsageError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 2 <= self.latent_dim <= 4096:
            raise UsageError(f"latent dim must be between 2 and 4096, got {self.latent_dim}")
        factor = 2 ** len(PRESETS[self.preset])
        if image_size % factor:
            raise UsageError(
                f"image size {image_size} must be a multiple of {factor} for preset "
                f"{self.preset!r} ({len(PRESETS[self.preset])} pooling steps)")


@dataclass
class TrainConfig:
    """How the autoencoder is trained; the run is a pure function of these and the images."""

    epochs: int = setting(6, "most epochs (early stopping usually ends sooner)")
    epoch_steps: int = setting(100, "optimiser steps per epoch, the same for any folder size "
                                    "(0: one pass over the training images)")
    batch_size: int = setting(64, "inputs per optimiser step")
    learning_rate: float = setting(1e-3, "Adam learning rate")
    patience: int = setting(5, "early-stopping patience in epochs (on held-out copies found, "
                               "then the validation loss)")
    seed: int = setting(42, "seed of initialisation, batch order and input noise")
    noise: float = setting(0.0, "std of Gaussian noise added to the inputs (a denoising "
                                "autoencoder; 0: none)")
    augment: str = setting("edits", "train on edited inputs (re-saves, resizes, small crops and "
                                    "shifts, blur, colour) to reconstruct the clean image", AUGMENTS)
    invariance: float = setting(0.1, "weight of the term that makes two edited views of an image "
                                     "find each other (0: none)")
    labels: float = setting(0.8, "share of the invariance term that also pulls together images "
                                 "filed under the same sub-folder (0: labels ignored; used "
                                 "only where a folder has two or more labels)")
    neighbours: int = setting(4, "images drawn into a batch together as look-alikes (nearest "
                                 "neighbours in the current features), so the invariance term "
                                 "learns to tell them apart (1: random batches; at most the "
                                 "images of a step)")
    readout: str = setting("whiten", "features as published: whitened on the training images, "
                                     "or the raw bottleneck", READOUTS)

    def validate(self) -> None:
        if self.epochs < 1:
            raise UsageError("epochs must be at least 1")
        if self.batch_size < 1:
            raise UsageError("batch size must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise UsageError("learning rate must be in (0, 1)")
        if self.patience < 1:
            raise UsageError("patience must be at least 1")
        if self.epoch_steps < 0:
            raise UsageError("epoch steps must be 0 (one pass) or more")
        if self.augment not in AUGMENTS or self.readout not in READOUTS:
            raise UsageError(f"augment must be one of {AUGMENTS} and readout one of {READOUTS}")
        if self.invariance < 0:
            raise UsageError("invariance weight must be 0 or more")
        if not 0 <= self.labels <= 1:
            raise UsageError(f"labels share must be in [0, 1], got {self.labels}")
        if self.neighbours < 1:
            raise UsageError(f"neighbours must be 1 (random batches) or more, got {self.neighbours}")
        if self.invariance and self.batch_size < 4:
            raise UsageError("an invariance term needs a batch size of at least 4 (two views "
                             "of at least two images)")


# What models trained before a setting existed did (RunConfig.from_dict).
BEFORE_SETTING = {"epoch_steps": 0, "augment": "none", "invariance": 0.0, "readout": "raw",
                  "labels": 0.0, "neighbours": 1}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.data.validate()
        self.model.validate(self.data.image_size)
        self.train.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A saved config; settings it lacks are taken as they were before they existed, so an
        older model is described as it was trained."""
        return cls(data=DataConfig(**d.get("data", {})), model=ModelConfig(**d.get("model", {})),
                   train=TrainConfig(**{**BEFORE_SETTING, **d.get("train", {})}))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class ClassifierConfig:
    """Head and training settings; saved in classifier.json so a run can be reproduced."""

    head: tuple[int, ...] = setting((128,), "dense head sizes, e.g. 64,32 (none: a softmax "
                                            "directly on the features)")
    dropout: float = setting(0.3, "dropout before each dense layer of the head")
    head_epochs: int = setting(10, "phase 1: the head only, encoder frozen")
    finetune_epochs: int = setting(10, "phase 2: everything, at the lower learning rate "
                                       "(0: no fine-tune)")
    learning_rate: float = setting(1e-3, "phase 1 learning rate")
    finetune_learning_rate: float = setting(1e-4, "phase 2 learning rate")
    batch_size: int = setting(64, "images per optimiser step")
    patience: int = setting(3, "early-stopping patience per phase, in epochs")
    monitor: str = setting("val_accuracy", "validation figure for early stopping and model "
                                           "choice", MONITORS)
    seed: int = setting(42, "seed of initialisation and batch order")

    def validate(self) -> ClassifierConfig:
        self.head = tuple(int(u) for u in self.head)
        if len(self.head) > 8 or any(not 1 <= u <= 8192 for u in self.head):
            raise UsageError(f"head must be at most 8 dense layers of 1-8192 units, got {self.head}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head_epochs < 1 or self.finetune_epochs < 0:
            raise UsageError("head epochs must be at least 1 and fine-tune epochs at least 0")
        for lr in (self.learning_rate, self.finetune_learning_rate):
            if not 0 < lr < 1:
                raise UsageError(f"learning rates must be in (0, 1), got {lr}")
        if self.batch_size < 1 or self.patience < 1:
            raise UsageError("batch size and patience must be at least 1")
        if self.monitor not in MONITORS:
            raise UsageError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        return self

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "head": list(self.head)}

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "head" in d:
            d["head"] = tuple(d["head"])
        return cls(**d)


def parse_head(text: str) -> tuple[int, ...]:
    """'64,32' -> (64, 32); '' or 'none' -> () (a softmax directly on the bottleneck)."""
    text = str(text).strip().lower()
    if text in ("", "none", "0"):
        return ()
    try:
        sizes = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(f"head sizes must be comma-separated integers like 64,32, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise UsageError(f"head sizes must be positive, got {text!r}")
    return sizes
