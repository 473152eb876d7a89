"""Settings for data, model and training, saved next to every model so a run can be reproduced."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

PRESETS: dict[str, tuple[tuple[int, int], ...]] = {
    # (filters, conv layers) per block; every block ends with a 2x2 max-pool.
    "small": ((32, 2), (64, 2)),
    "medium": ((32, 2), (64, 2), (128, 2)),
    "large": ((32, 2), (64, 2), (128, 2), (256, 2)),
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
}
FITS = ("pad", "crop")


@dataclass
class DataConfig:
    """How images become model input. The same settings are used at training and at inference."""

    images: str = ""
    image_size: int = 64
    fit: str = "pad"  # keep the aspect ratio: pad to a square (default) or centre-crop
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def validate(self) -> None:
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"image size must be between 8 and 1024 pixels, got {self.image_size}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("validation and test fractions must be in [0, 1) and sum below 1")


@dataclass
class ModelConfig:
    preset: str = "medium"
    latent_dim: int = 128

    def validate(self, image_size: int) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 2 <= self.latent_dim <= 4096:
            raise ValueError(f"latent dim must be between 2 and 4096, got {self.latent_dim}")
        factor = 2 ** len(PRESETS[self.preset])
        if image_size % factor:
            raise ValueError(
                f"image size {image_size} must be a multiple of {factor} for preset "
                f"{self.preset!r} ({len(PRESETS[self.preset])} pooling steps)")


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    seed: int = 42
    noise: float = 0.0  # std of Gaussian noise added to inputs (denoising autoencoder)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning rate must be in (0, 1)")
        if self.patience < 1:
            raise ValueError("patience must be at least 1")


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
        return cls(DataConfig(**d.get("data", {})), ModelConfig(**d.get("model", {})),
                   TrainConfig(**d.get("train", {})))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
