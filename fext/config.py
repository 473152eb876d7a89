"""Settings for data, model, training, classifier and extraction, saved next to every model so
a run can be reproduced.

Each setting's default, choices or bounds and help text are written once, here, on its
dataclass field (`setting(...)`); the CLI's options, the app's forms, the experiment grid and
the README's option list read them from `describe(...)`, and `check` is the one validator of
every value. Configs are built by keyword.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
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
DECODERS = ("lean", "wide")  # fext.model.build_autoencoder
FITS = ("pad", "crop")
PRECISIONS = ("float32", "bfloat16")  # of the forward passes (inference) and of training
MONITORS = ("val_accuracy", "val_loss")  # what the classifier selects and stops on
AUGMENTS = ("edits", "none")  # of the autoencoder's training inputs
READOUTS = ("whiten", "raw")  # of the published features (fext.readout)
FOLDERS = ("auto", "classes", "albums")  # what training makes of sub-folders (fext.train.sub_folders)
INDEXES = ("auto", "flat", "ivf", "ivfpq")  # FAISS index kinds (fext.index)
SCORE_MODES = ("all", "isolation")  # extraction's anomaly scores: everything, or no decoder pass
REFERENCES = ("auto", "model", "none")  # what extraction's anomaly scores compare against


def setting(default, help: str, choices: tuple | None = None, *, at_least=None, at_most=None,
            above=None, below=None):
    """A dataclass field carrying its help text and allowed values (the one source of both):
    `choices`, or bounds (`at_least`/`at_most` inclusive, `above`/`below` exclusive; for a
    tuple of numbers, each of them). `check` enforces them."""
    bounds = {k: v for k, v in (("at_least", at_least), ("at_most", at_most), ("above", above),
                                ("below", below)) if v is not None}
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds})


def flag(name: str) -> str:
    """The command-line option of setting `name` (what every message about it says)."""
    return "--" + name.replace("_", "-")


def describe(cls) -> list[dataclasses.Field]:
    """The settings of a config dataclass, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def check(cfg) -> None:
    """Every setting of config `cfg` against its declared choices or bounds: the one validator,
    with one message shape for every bad value ("--image-size must be between 8 and 1024,
    got 4"). Checks across settings, which no single field can declare, follow in each
    config's `validate`."""
    for f in describe(type(cfg)):
        value = getattr(cfg, f.name)
        wanted = _wanted(f, value)
        if wanted:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
            raise UsageError(f"{flag(f.name)} must be {wanted}, got {shown}")


def _wanted(f: dataclasses.Field, value) -> str | None:
    """What `value` should have been for setting `f`, or None when it is allowed."""
    choices, bounds = f.metadata["choices"], f.metadata.get("bounds", {})
    if choices:
        return None if value in choices else "one of " + ", ".join(map(str, choices))
    if not bounds:
        return None
    whole = isinstance(f.default, int) or isinstance(f.default, tuple)
    values = value if isinstance(value, tuple) else (value,)
    kind = numbers.Integral if whole else numbers.Real
    if any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
        return "a whole number" if whole else "a number"
    ok = {"at_least": lambda v, b: v >= b, "at_most": lambda v, b: v <= b,
          "above": lambda v, b: v > b, "below": lambda v, b: v < b}
    if all(ok[k](v, b) for v in values for k, b in bounds.items()):
        return None
    if {"at_least", "at_most"} <= set(bounds):
        text = f"between {bounds['at_least']} and {bounds['at_most']}"
    else:
        text = " and ".join(f"{k.replace('_', ' ')} {b}" for k, b in bounds.items())
    return text + (" each" if isinstance(value, tuple) else "")


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
    image_size: int = setting(64, "square input size in pixels (a multiple of 2^blocks of the preset)",
                              at_least=8, at_most=1024)
    fit: str = setting("pad", "keep the aspect ratio by padding to a square with white, or "
                              "centre-crop", FITS)
    val_fraction: float = setting(0.1, "share of the images in the validation split (early "
                                       "stopping, model choice)", at_least=0, below=1)
    test_fraction: float = setting(0.1, "share of the images in the test split (only reported)",
                                   at_least=0, below=1)

    def validate(self) -> DataConfig:
        check(self)
        if self.val_fraction + self.test_fraction >= 1:
            raise UsageError(f"--val-fraction and --test-fraction must sum below 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        return self


@dataclass
class ModelConfig:
    """The network: a VGG-style preset and the size of the feature vector (the bottleneck)."""

    preset: str = setting("medium", "VGG-style blocks of 3x3 convolutions: small 2 blocks, "
                                    "medium 3, large 4, vgg16 VGG16's 5", tuple(PRESETS))
    latent_dim: int = setting(128, "feature vector size (the bottleneck)", at_least=2, at_most=4096)
    decoder: str = setting("lean", "lean: each decoder block's convolutions at its lower "
                                   "resolution, then upsampling (medium at 64 px: 0.41 GFLOP an "
                                   "image forward); wide: upsampling, then the convolutions "
                                   "(0.92 GFLOP; models trained before 2026-12-05)", DECODERS)

    def validate(self, image_size: int) -> ModelConfig:
        check(self)
        factor = 2 ** len(PRESETS[self.preset])
        if image_size % factor:
            raise UsageError(
                f"image size {image_size} must be a multiple of {factor} for preset "
                f"{self.preset!r} ({len(PRESETS[self.preset])} pooling steps)")
        return self


@dataclass
class TrainConfig:
    """How the autoencoder is trained; the run is a pure function of these and the images."""

    epochs: int = setting(12, "most epochs (early stopping usually ends sooner: see --patience)",
                          at_least=1)
    epoch_steps: int = setting(50, "optimiser steps per epoch, the same for any folder size "
                                    "(0: one pass over the training images)", at_least=0)
    batch_size: int = setting(64, "inputs per optimiser step", at_least=1)
    learning_rate: float = setting(1e-3, "Adam learning rate at the start (see "
                                          "--lr-drop)",
                                  above=0, below=1)
    lr_drop: float = setting(1.0, "factor the learning rate is multiplied by after each epoch "
                                  "that did not gain a point of held-out copies (or, without "
                                  "them, beat the best): smaller steps where progress stalls "
                                  "(1: constant; 0.5 with the default patience found more "
                                  "copies in more time, docs/BENCHMARKS.md §9)",
                             above=0, at_most=1)
    patience: int = setting(3, "early-stopping patience in epochs (on held-out copies found, "
                               "then the validation loss): a run stops once this many epochs "
                               "in a row did not gain a point of held-out copies (or, without "
                               "them, beat the best)", at_least=1)
    held_out_copies: int = setting(256, "edited copies of validation images searched for after "
                                        "each epoch: the figure that chooses the published epoch "
                                        "and stops the run (fewer: quicker epochs, a noisier "
                                        "choice; 0: none, the validation loss decides)",
                                   at_least=0)
    seed: int = setting(42, "seed of initialisation, batch order and input noise", at_least=0)
    noise: float = setting(0.0, "std of Gaussian noise added to the inputs (a denoising "
                                "autoencoder; 0: none)", at_least=0)
    augment: str = setting("edits", "train on edited inputs (re-saves, resizes, small crops and "
                                    "shifts, blur, colour) to reconstruct the clean image", AUGMENTS)
    invariance: float = setting(0.1, "weight of the term that makes two edited views of an image "
                                     "find each other (0: none)", at_least=0)
    labels: float = setting(0.8, "share of the invariance term that also pulls together images "
                                 "filed under the same sub-folder (0: labels ignored; used "
                                 "only where a folder has two or more labels, taken as "
                                 "classes: see --folders)", at_least=0, at_most=1)
    folders: str = setting("auto", "what sub-folders are: classes (the --labels share pulls "
                                   "the images of one sub-folder together), albums (ignored "
                                   "in training: images are told apart by themselves, as in a "
                                   "flat folder), or auto: classes where an image's nearest "
                                   "image by its pixels shares its sub-folder far more often "
                                   "than chance (digits filed by digit), albums otherwise "
                                   "(photos filed by date or place)", FOLDERS)
    decoded_views: int = setting(2, "views of each image whose reconstruction the objective "
                                    "includes, with an invariance term: 2 (both) or 1 (the "
                                    "first view only: with the wide decoder a step costs about "
                                    "0.7 of both, but odd ones out ranked far worse on two of "
                                    "four photo folders; docs/QUALITY.md)", at_least=1, at_most=2)
    neighbours: int = setting(4, "images drawn into a batch together as look-alikes (nearest "
                                 "neighbours in the current features), so the invariance term "
                                 "learns to tell them apart (1: random batches; at most the "
                                 "images of a step)", at_least=1)
    readout: str = setting("whiten", "features as published: whitened on the training images, "
                                     "or the raw bottleneck", READOUTS)
    precision: str = setting("auto", "of training: bfloat16 is mixed precision (float32 "
                                     "weights, outputs and losses; the published model is "
                                     "float32 either way); auto: bfloat16 where the machine "
                                     "computes it natively (a GPU's tensor cores; a CPU's "
                                     "AVX512_BF16 or AMX), else float32",
                             ("auto",) + PRECISIONS)

    def validate(self) -> TrainConfig:
        check(self)
        if self.invariance and self.batch_size < 4:
            raise UsageError("an invariance term needs a batch size of at least 4 (two views "
                             "of at least two images)")
        return self


# What models trained before a setting existed did (RunConfig.from_dict), by section.
BEFORE_SETTING = {"model": {"decoder": "wide"},
                  "train": {"epoch_steps": 0, "augment": "none", "invariance": 0.0,
                            "readout": "raw", "labels": 0.0, "neighbours": 1,
                            "precision": "float32", "folders": "classes", "lr_drop": 1.0}}


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
        before = {section: {**BEFORE_SETTING.get(section, {}), **d.get(section, {})}
                  for section in ("data", "model", "train")}
        return cls(data=DataConfig(**before["data"]), model=ModelConfig(**before["model"]),
                   train=TrainConfig(**before["train"]))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class ClassifierConfig:
    """Head and training settings; saved in classifier.json so a run can be reproduced."""

    head: tuple[int, ...] = setting((128,), "dense head sizes, e.g. 64,32 (none: a softmax "
                                            "directly on the features)", at_least=1, at_most=8192)
    dropout: float = setting(0.3, "dropout before each dense layer of the head", at_least=0,
                             below=1)
    head_epochs: int = setting(10, "phase 1: the head only, encoder frozen", at_least=1)
    finetune_epochs: int = setting(10, "phase 2: everything, at the lower learning rate "
                                       "(0: no fine-tune)", at_least=0)
    learning_rate: float = setting(1e-3, "phase 1 learning rate", above=0, below=1)
    finetune_learning_rate: float = setting(1e-4, "phase 2 learning rate", above=0, below=1)
    batch_size: int = setting(64, "images per optimiser step", at_least=1)
    patience: int = setting(3, "early-stopping patience per phase, in epochs", at_least=1)
    monitor: str = setting("val_accuracy", "validation figure for early stopping and model "
                                           "choice", MONITORS)
    seed: int = setting(42, "seed of initialisation and batch order", at_least=0)

    def validate(self) -> ClassifierConfig:
        self.head = tuple(self.head)
        check(self)
        if len(self.head) > 8:
            raise UsageError(f"--head must be at most 8 dense layers, got {len(self.head)}")
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


@dataclass
class ExtractConfig:
    """How a folder is encoded (`python -m fext extract`); recorded in each extraction's meta."""

    index: str = setting("auto", "index type (auto: exact below 50k images, IVF above, IVF-PQ "
                                 "above 5M)", INDEXES)
    scores: str = setting("all", "anomaly scores: all (isolation, reconstruction error, "
                                 "appearance and their combination) or isolation (isolation "
                                 "and appearance; skips the decoder pass: features about 3x "
                                 "faster on a CPU)", SCORE_MODES)
    precision: str = setting("auto", "of the forward passes; auto: bfloat16 where the machine "
                                     "computes it natively (a GPU's tensor cores; a CPU's "
                                     "AVX512_BF16 or AMX: about 2x faster), else float32",
                             ("auto",) + PRECISIONS)
    reference: str = setting("auto", "what anomaly scores compare against: auto: a folder other "
                                     "than the training folder is also scored against the "
                                     "model's training collection (the 'reference' score, "
                                     "ranked first); model: any folder is; none: only odd ones "
                                     "out within the folder", REFERENCES)

    def validate(self) -> ExtractConfig:
        check(self)
        return self


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
