"""VGG-style convolutional autoencoder: builders that return `keras.Model`s.

Pure Keras 3 layers (no backend-specific ops, no Lambda layers), so the same code runs on
TensorFlow, JAX or PyTorch and the saved `.keras` files load with ``safe_mode=True``.
The feature vector is a compact dense bottleneck, not a flattened feature map.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers

from .config import PRECISIONS, PRESETS, ModelConfig
from .errors import UsageError

BOTTLENECK = "bottleneck"
RECONSTRUCTION = "reconstruction"
READOUT = "readout"  # the read-out of the features (fext.readout), in a published model
READOUT_INVERSE = "readout_inverse"  # its inverse, so the decoder still sees the bottleneck
TEMPERATURE = 0.1  # of the invariance term's softmax over cosine similarities


def conv_block(x, filters: int, convs: int, prefix: str, dtype: str = "float32",
               last: int | None = None):
    """`convs` x (3x3 conv, batch norm, ReLU) of `filters` channels, the last of `last`."""
    for i in range(convs):
        width = last if last and i == convs - 1 else filters
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype,
                          name=f"{prefix}_conv{i + 1}")(x)
        # Momentum 0.9: moving statistics settle within an epoch even on small collections,
        # so validation loss (inference mode) tracks training loss from the first epochs.
        x = layers.BatchNormalization(momentum=0.9, dtype=dtype, name=f"{prefix}_bn{i + 1}")(x)
        x = layers.ReLU(dtype=dtype, name=f"{prefix}_relu{i + 1}")(x)
    return x


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy of the hidden layers of a model trained in `precision`: mixed
    bfloat16 computes in bfloat16 and keeps float32 weights (the optimiser updates those)."""
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


def build_autoencoder(cfg: ModelConfig, image_size: int, precision: str = "float32") -> keras.Model:
    """Encoder of VGG blocks (3x3 convs + 2x2 max-pool), a dense bottleneck, a decoder of the
    blocks in reverse.

    The lean decoder (`cfg.decoder`) mirrors the encoder: each block's convolutions run at its
    lower resolution, the last one narrowing to the next block's width, then a 2x upsampling
    undoes the pool. The wide one upsampled first, so every convolution ran at four times the
    places and at the wider block's width: 0.61 of the medium preset's 0.92 GFLOP an image at
    64 px, where the lean one costs 0.10 of 0.41 (a training step 0.55 of the wide one's,
    docs/BENCHMARKS.md §9).

    `precision="bfloat16"` makes it a mixed-precision model, layer by layer (no global policy,
    so nothing leaks into the next model built in this process): every hidden layer computes
    in bfloat16, while the feature vector (which the invariance term and the read-out read)
    and the reconstruction (which the reconstruction loss reads) are computed in float32."""
    cfg.validate(image_size)
    hidden = dtype_policy(precision)
    blocks = PRESETS[cfg.preset]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for b, (filters, convs) in enumerate(blocks, 1):
        x = conv_block(x, filters, convs, f"enc{b}", hidden)
        x = layers.MaxPooling2D(2, dtype=hidden, name=f"enc{b}_pool")(x)
    side, channels = image_size // 2 ** len(blocks), blocks[-1][0]
    x = layers.Flatten(dtype=hidden, name="enc_flatten")(x)
    z = layers.Dense(cfg.latent_dim, dtype="float32", name=BOTTLENECK)(x)

    y = layers.Dense(side * side * channels, dtype=hidden, name="dec_dense")(z)
    y = layers.ReLU(dtype=hidden, name="dec_dense_relu")(y)
    y = layers.Reshape((side, side, channels), dtype=hidden, name="dec_reshape")(y)
    for b, (filters, convs) in reversed(list(enumerate(blocks, 1))):
        if cfg.decoder == "wide":
            y = layers.UpSampling2D(2, dtype=hidden, name=f"dec{b}_up")(y)
            y = conv_block(y, filters, convs, f"dec{b}", hidden)
        else:
            narrower = blocks[b - 2][0] if b > 1 else filters
            y = conv_block(y, filters, convs, f"dec{b}", hidden, last=narrower)
            y = layers.UpSampling2D(2, dtype=hidden, name=f"dec{b}_up")(y)
    outputs = layers.Conv2D(3, 3, padding="same", activation="sigmoid", dtype="float32",
                            name=RECONSTRUCTION)(y)
    return keras.Model(inputs, outputs, name=f"fext_{cfg.preset}_ae")


def precision_of(model: keras.Model) -> str:
    """"bfloat16" where any layer of `model` computes in bfloat16, else "float32"."""
    return "bfloat16" if any(layer.compute_dtype == "bfloat16" for layer in model.layers) \
        else "float32"


def in_float32(autoencoder: keras.Model) -> keras.Model:
    """The same autoencoder (same layers, names and weights) computing in float32 throughout:
    what a model trained in mixed precision is published as, so that every reader of a model
    file loads and runs it exactly as one trained in float32. A float32 model is returned as
    it is."""
    if precision_of(autoencoder) == "float32":
        return autoencoder
    image = keras.Input(autoencoder.input.shape[1:], name="image")
    x = image
    for layer in autoencoder.layers[1:]:  # the builders make a chain: image -> ... -> output
        clone = type(layer).from_config({**layer.get_config(), "dtype": "float32"})
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return keras.Model(image, x, name=autoencoder.name)


def encoder_of(autoencoder: keras.Model) -> keras.Model:
    """The encoder half, sharing weights: image -> bottleneck vector."""
    return keras.Model(autoencoder.input, autoencoder.get_layer(BOTTLENECK).output, name="encoder")


def invariance_loss(labels, pairs, label_share: float = 0.0):
    """Two edited views of each image, made to find each other among the batch (InfoNCE).

    `pairs` holds, for a batch of 2h inputs ordered (view 1 of images 1..h, view 2 of images
    1..h), each input's bottleneck; each view's partner must have the highest cosine
    similarity among the other 2h-1 views. This is what finding an edited photo's source
    asks of the features, learnt from the user's own images (a SimCLR-style objective).

    `labels` holds each input's label index (-1: none). A `label_share` of the term counts
    every view of an image filed under the same label as a partner too (supervised
    contrastive, Khosla et al. 2020): the features then keep the folder's grouping, where
    instance discrimination alone pushes an image away from its own label's other images.
    """
    z = pairs / (keras.ops.norm(pairs, axis=1, keepdims=True) + 1e-8)
    n = keras.ops.shape(z)[0]
    h = n // 2
    eye = keras.ops.eye(n, dtype=z.dtype)
    logits = keras.ops.matmul(z, keras.ops.transpose(z)) / TEMPERATURE
    log_p = keras.ops.log_softmax(logits - 1e9 * eye, axis=1)  # a view is not its own partner
    partner = keras.ops.one_hot(keras.ops.concatenate([keras.ops.arange(h, n), keras.ops.arange(0, h)]),
                                n, dtype=z.dtype)
    loss = -keras.ops.sum(partner * log_p, axis=1)
    if labels is None or not label_share:
        return loss
    label = keras.ops.cast(keras.ops.reshape(labels, (-1,)), z.dtype)
    same = keras.ops.cast(keras.ops.equal(label[:, None], label[None, :]), z.dtype)
    same = same * keras.ops.cast(label[:, None] >= 0, z.dtype) * (1 - eye)
    positive = keras.ops.maximum(same, partner)
    grouped = -keras.ops.sum(positive * log_p, axis=1) / keras.ops.sum(positive, axis=1)
    return (1 - label_share) * loss + label_share * grouped


@keras.saving.register_keras_serializable(package="fext")
class InvarianceLoss(keras.losses.Loss):
    """`invariance_loss` with its label share, as a loss a saved trainer carries."""

    def __init__(self, label_share: float = 0.0, name: str = "invariance", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_share = label_share

    def call(self, labels, pairs):
        return invariance_loss(labels, pairs, self.label_share)

    def get_config(self):
        return {**super().get_config(), "label_share": self.label_share}


@keras.saving.register_keras_serializable(package="fext")
class FirstViews(keras.layers.Layer):
    """The first half of a batch of features: the first view of each image (a step's inputs
    are views 1 of its images, then views 2), the only ones the trainer decodes."""

    def call(self, x):
        return x[: keras.ops.shape(x)[0] // 2]

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


def _decoder_layers(model: keras.Model) -> list:
    """The layers after the bottleneck that make the reconstruction, in order (the builders
    make a chain; a trainer's FirstViews is not one of them)."""
    chain = [layer for layer in model.layers[1:] if not isinstance(layer, FirstViews)]
    cut = next(i for i, layer in enumerate(chain) if layer.name == BOTTLENECK) + 1
    return chain[cut:]


def _decoded(layers_: list, z):
    for layer in layers_:
        z = layer(z)
    return z


def build_trainer(autoencoder: keras.Model, invariance: float, learning_rate: float,
                  label_share: float = 0.0, decoded_views: int = 2) -> keras.Model:
    """The autoencoder with its bottleneck as a second output, compiled with the reconstruction
    loss plus `invariance` x `invariance_loss`. It shares every layer (and weight) with
    `autoencoder`; only the autoencoder is published.

    With `decoded_views` 1 the reconstruction (its target: the clean images, once) is made
    from the first view of each image only: the second view serves the invariance term, which
    reads the bottleneck alone. With the wide decoder (0.61 of the medium preset's 0.92 GFLOP
    an image at 64 px) a step then costs 0.67 of decoding both (docs/BENCHMARKS.md §9)."""
    z = autoencoder.get_layer(BOTTLENECK).output
    reconstruction = (autoencoder.output if decoded_views == 2 else
                      _decoded(_decoder_layers(autoencoder), FirstViews(name="first_views")(z)))
    trainer = keras.Model(autoencoder.input, [reconstruction, z], name="trainer")
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss=["mse", InvarianceLoss(label_share)], loss_weights=[1.0, invariance])
    return trainer


def autoencoder_of(trainer: keras.Model) -> keras.Model:
    """The autoencoder inside a (loaded) trainer: same layers, every input reconstructed."""
    z = trainer.get_layer(BOTTLENECK).output
    return keras.Model(trainer.input, _decoded(_decoder_layers(trainer), z), name="fext_ae")


def inference_parts(autoencoder: keras.Model,
                    precision: str = "float32") -> tuple[keras.Model, keras.Model]:
    """(encoder: image -> features, decoder: features -> reconstruction) for inference.

    Each Conv2D -> BatchNormalization -> ReLU runs as one Conv2D with bias and ReLU whose
    weights absorb the frozen normalisation: the same function (to float rounding), one
    fused kernel instead of three passes over the activations (about 15 % faster on CPU,
    bench/ingest.py). Two models, so features can be computed without paying for the decoder.
    `precision="bfloat16"` computes the convolutions in bfloat16 (the bottleneck and the
    reconstruction stay float32); see `native_bfloat16`.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    chain = autoencoder.layers[1:]  # the builders make a chain: image -> ... -> reconstruction
    last = READOUT if any(layer.name == READOUT for layer in chain) else BOTTLENECK
    cut = next(i for i, layer in enumerate(chain) if layer.name == last) + 1
    image = keras.Input(autoencoder.input.shape[1:], name="image")
    encoder = keras.Model(image, _folded(chain[:cut], image, precision), name="encoder")
    z = keras.Input((chain[cut - 1].units,), name="features")
    decoder = keras.Model(z, _folded(chain[cut:], z, precision), name="decoder")
    return encoder, decoder


def native_bfloat16() -> bool:
    """True where this machine computes bfloat16 natively: a GPU with bfloat16 tensor cores
    (NVIDIA compute capability 8.0 and later) or a TPU, or, under TensorFlow, a CPU with
    AVX512_BF16 or AMX; elsewhere bfloat16 would be emulated, and slower than float32."""
    gpu = _accelerator_bfloat16()
    if gpu is not None:
        return gpu
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return keras.backend.backend() == "tensorflow" and (" avx512_bf16" in flags
                                                        or " amx_bf16" in flags)


def accelerator() -> bool:
    """Whether Keras's backend computes on a GPU (or a TPU) here: what decides how training
    feeds it (fext.edits.edit_workers)."""
    return _accelerator_bfloat16() is not None


@functools.cache  # a process computes on one device
def _accelerator_bfloat16() -> bool | None:
    """None where the backend computes on the CPU; else whether its accelerator has native
    bfloat16 (a TPU; an NVIDIA GPU from compute capability 8.0, Ampere)."""
    backend = keras.backend.backend()
    capability = None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return None
        if device.platform == "tpu":
            return True
        capability = getattr(device, "compute_capability", None)  # "9.0" on an H100
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    elif backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        capability = torch.cuda.get_device_capability()
    else:
        return None
    if isinstance(capability, str):
        capability = tuple(int(v) for v in capability.split(".")[:1])
    return bool(capability) and capability[0] >= 8


FLOAT32_LAYERS = (BOTTLENECK, READOUT, READOUT_INVERSE, RECONSTRUCTION)  # the feature vector
# as published (read-out included), what the decoder starts from, and the reconstruction


def _policy(layer, precision: str) -> str:
    """Layers compute in bfloat16 when asked, but FLOAT32_LAYERS; in float32 otherwise,
    whatever precision the model was trained in."""
    if precision == "bfloat16" and layer.name not in FLOAT32_LAYERS:
        return "mixed_bfloat16"
    return "float32"


def _folded(chain: list, x, precision: str = "float32"):
    """Apply a chain of trained layers to `x`, with conv + batch-norm (+ ReLU) folded."""
    i = 0
    while i < len(chain):
        layer = chain[i]
        bn = chain[i + 1] if i + 1 < len(chain) else None
        if isinstance(layer, layers.Conv2D) and isinstance(bn, layers.BatchNormalization):
            relu = i + 2 < len(chain) and type(chain[i + 2]) is layers.ReLU \
                and chain[i + 2].get_config().get("max_value") is None
            kernel, bias = _numpy(layer.kernel), _numpy(layer.bias) if layer.use_bias else 0.0
            gamma = _numpy(bn.gamma) if bn.scale else 1.0
            beta = _numpy(bn.beta) if bn.center else 0.0
            scale = gamma / np.sqrt(_numpy(bn.moving_variance) + bn.epsilon)
            mean = _numpy(bn.moving_mean)
            fused = layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                  padding=layer.padding, activation="relu" if relu else None,
                                  dtype=_policy(layer, precision), name=layer.name)
            x = fused(x)
            fused.set_weights([kernel * scale, beta + (bias - mean) * scale])
            i += 3 if relu else 2
        else:
            clone = type(layer).from_config({**layer.get_config(),
                                             "dtype": _policy(layer, precision)})
            x = clone(x)
            clone.set_weights(layer.get_weights())
            i += 1
    return x


def _numpy(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable).astype(np.float32)


def compile_autoencoder(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def load(path) -> keras.Model:
    """Load a saved model in safe mode: files carrying Lambda layers or pickled code are refused."""
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as e:  # Keras raises ValueError / TypeError for unsafe or foreign files
        raise UsageError(f"cannot load model {path}: {e}") from None


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
