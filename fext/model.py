"""VGG-style convolutional autoencoder: builders that return `keras.Model`s.

Pure Keras 3 layers (no backend-specific ops, no Lambda layers), so the same code runs on
TensorFlow, JAX or PyTorch and the saved `.keras` files load with ``safe_mode=True``.
The feature vector is a compact dense bottleneck, not a flattened feature map.
"""

from __future__ import annotations

import keras
from keras import layers

from .config import PRESETS, ModelConfig

BOTTLENECK = "bottleneck"
RECONSTRUCTION = "reconstruction"


def conv_block(x, filters: int, convs: int, prefix: str):
    for i in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv{i + 1}")(x)
        # Momentum 0.9: moving statistics settle within an epoch even on small collections,
        # so validation loss (inference mode) tracks training loss from the first epochs.
        x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{prefix}_relu{i + 1}")(x)
    return x


def build_autoencoder(cfg: ModelConfig, image_size: int) -> keras.Model:
    """Encoder of VGG blocks (3x3 convs + 2x2 max-pool), a dense bottleneck, a mirrored decoder."""
    cfg.validate(image_size)
    blocks = PRESETS[cfg.preset]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for b, (filters, convs) in enumerate(blocks, 1):
        x = conv_block(x, filters, convs, f"enc{b}")
        x = layers.MaxPooling2D(2, name=f"enc{b}_pool")(x)
    side, channels = image_size // 2 ** len(blocks), blocks[-1][0]
    x = layers.Flatten(name="enc_flatten")(x)
    z = layers.Dense(cfg.latent_dim, name=BOTTLENECK)(x)

    y = layers.Dense(side * side * channels, name="dec_dense")(z)
    y = layers.ReLU(name="dec_dense_relu")(y)
    y = layers.Reshape((side, side, channels), name="dec_reshape")(y)
    for b, (filters, convs) in reversed(list(enumerate(blocks, 1))):
        y = layers.UpSampling2D(2, name=f"dec{b}_up")(y)
        y = conv_block(y, filters, convs, f"dec{b}")
    outputs = layers.Conv2D(3, 3, padding="same", activation="sigmoid", dtype="float32",
                            name=RECONSTRUCTION)(y)
    return keras.Model(inputs, outputs, name=f"fext_{cfg.preset}_ae")


def encoder_of(autoencoder: keras.Model) -> keras.Model:
    """The encoder half, sharing weights: image -> bottleneck vector."""
    return keras.Model(autoencoder.input, autoencoder.get_layer(BOTTLENECK).output, name="encoder")


def inference_model(autoencoder: keras.Model) -> keras.Model:
    """One pass giving both the feature vector and the reconstruction (for anomaly scores)."""
    return keras.Model(autoencoder.input,
                       [autoencoder.get_layer(BOTTLENECK).output, autoencoder.output], name="infer")


def compile_autoencoder(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def load(path) -> keras.Model:
    """Load a saved model in safe mode: files carrying Lambda layers or pickled code are refused."""
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as e:  # Keras raises ValueError / TypeError for unsafe or foreign files
        raise ValueError(f"cannot load model {path}: {e}") from None


def flops_per_image(model: keras.Model) -> int:
    """Multiply-accumulates x2 of the conv and dense layers for one forward pass (for GPU MFU)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            h, w, cout = layer.output.shape[1:]
            cin = layer.input.shape[-1]
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += 2 * h * w * cout * cin * k
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)
