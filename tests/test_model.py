"""Architecture: presets, compact bottleneck, lean or wide decoder, safe loading."""

import keras
import numpy as np
import pytest

from fext import model as model_lib
from fext.config import ModelConfig, RunConfig


@pytest.mark.parametrize("preset,blocks,convs", [("small", 2, 4), ("medium", 3, 6),
                                                 ("large", 4, 8), ("vgg16", 5, 13)])
def test_presets_build_with_a_compact_bottleneck(preset, blocks, convs):
    size = 2 ** blocks * 2
    ae = model_lib.build_autoencoder(ModelConfig(preset=preset, latent_dim=32), size)
    enc_convs = [lay for lay in ae.layers if lay.name.startswith("enc") and "_conv" in lay.name]
    dec_convs = [lay for lay in ae.layers if lay.name.startswith("dec") and "_conv" in lay.name]
    assert len(enc_convs) == convs == len(dec_convs)
    assert all(lay.kernel_size == (3, 3) for lay in enc_convs)
    assert model_lib.encoder_of(ae).output.shape == (None, 32)
    assert ae.output.shape == (None, size, size, 3)


def test_the_lean_decoder_mirrors_the_encoder_at_less_than_half_the_arithmetic():
    """Each decoder block convolves at its lower resolution, narrowing to the next block's
    width, then upsamples: the encoder's widths and resolutions in reverse."""
    lean = model_lib.build_autoencoder(ModelConfig(preset="medium", latent_dim=16), 32)
    wide = model_lib.build_autoencoder(ModelConfig(preset="medium", latent_dim=16,
                                                   decoder="wide"), 32)
    convs = [(lay.output.shape[1], lay.filters) for lay in lean.layers
             if lay.name.startswith("dec") and "_conv" in lay.name]
    assert convs == [(4, 128), (4, 64), (8, 64), (8, 32), (16, 32), (16, 32)]
    assert lean.output.shape == wide.output.shape == (None, 32, 32, 3)
    assert model_lib.flops_per_image(lean) < 0.5 * model_lib.flops_per_image(wide)


def test_a_model_saved_before_the_decoder_setting_is_described_as_wide():
    assert RunConfig.from_dict({"model": {"preset": "small"}}).model.decoder == "wide"
    assert RunConfig().model.decoder == "lean"


def test_vgg16_filters_match_vgg16():
    ae = model_lib.build_autoencoder(ModelConfig(preset="vgg16", latent_dim=128), 32)
    filters = [lay.filters for lay in ae.layers if lay.name.startswith("enc") and "_conv" in lay.name]
    assert filters == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def test_image_size_must_fit_the_pooling_steps():
    with pytest.raises(ValueError, match="multiple of 8"):
        model_lib.build_autoencoder(ModelConfig(preset="medium", latent_dim=16), 20)


def test_saved_model_round_trips_in_safe_mode(tmp_path):
    cfg = ModelConfig(preset="small", latent_dim=4)
    ae = model_lib.compile_autoencoder(model_lib.build_autoencoder(cfg, 8), 1e-3)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    ae.save(tmp_path / "m.keras")
    again = model_lib.load(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict_on_batch(x), ae.predict_on_batch(x), atol=1e-6)


def test_model_with_lambda_code_is_refused(tmp_path):
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    keras.Model(inp, out).save(tmp_path / "evil.keras")
    with pytest.raises(ValueError, match="cannot load model"):
        model_lib.load(tmp_path / "evil.keras")


def test_flops_are_counted():
    ae = model_lib.build_autoencoder(ModelConfig(preset="small", latent_dim=8), 16)
    assert model_lib.flops_per_image(ae) > 2 * 16 * 16 * 3 * 32 * 9


@pytest.mark.parametrize("preset,size,decoder", [("small", 16, "lean"), ("medium", 32, "lean"),
                                                 ("medium", 32, "wide")])
def test_inference_parts_compute_what_the_trained_model_computes(preset, size, decoder):
    keras.utils.set_random_seed(1)
    ae = model_lib.build_autoencoder(ModelConfig(preset=preset, latent_dim=16, decoder=decoder),
                                     size)
    rng = np.random.default_rng(0)
    for layer in ae.layers:  # batch-norm statistics far from their initial values
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.5, n), rng.uniform(0.3, 3.0, n)])
    encoder, decoder = model_lib.inference_parts(ae)
    assert not any(isinstance(lay, keras.layers.BatchNormalization)
                   for lay in encoder.layers + decoder.layers)  # folded into the convolutions
    x = rng.random((4, size, size, 3)).astype(np.float32)
    z = np.asarray(encoder.predict_on_batch(x))
    np.testing.assert_allclose(z, model_lib.encoder_of(ae).predict_on_batch(x), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(decoder.predict_on_batch(z), ae.predict_on_batch(x), atol=1e-5)


def test_bfloat16_inference_stays_close_to_float32():
    keras.utils.set_random_seed(2)
    ae = model_lib.build_autoencoder(ModelConfig(preset="medium", latent_dim=32), 32)
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    (e32, d32), (e16, d16) = (model_lib.inference_parts(ae, p) for p in ("float32", "bfloat16"))
    assert e16.get_layer("enc1_conv1").compute_dtype == "bfloat16"
    z32, z16 = np.asarray(e32.predict_on_batch(x)), np.asarray(e16.predict_on_batch(x))
    assert z16.dtype == np.float32  # the feature vector itself is computed in float32
    cos = (z32 * z16).sum(1) / np.linalg.norm(z32, axis=1) / np.linalg.norm(z16, axis=1)
    assert cos.min() > 0.999
    r16 = np.asarray(d16.predict_on_batch(z16))
    assert r16.dtype == np.float32 and np.abs(r16 - d32.predict_on_batch(z32)).max() < 0.02
    # a published model's read-out (and its inverse, where the decoder starts) stay float32 too:
    # the features are not rounded to bfloat16, and the decoder is fed what the encoder gives
    from fext.readout import with_readout

    published = with_readout(ae, np.zeros(32, np.float32), 2 * np.eye(32, dtype=np.float32))
    e16, d16 = model_lib.inference_parts(published, "bfloat16")
    assert {e16.get_layer("readout").compute_dtype, d16.get_layer("readout_inverse").compute_dtype,
            e16.output.dtype, d16.input.dtype} == {"float32"}
    assert np.asarray(e16.predict_on_batch(x)).dtype == np.float32
    with pytest.raises(ValueError, match="precision"):
        model_lib.inference_parts(ae, "float16")


def test_a_mixed_precision_model_is_published_as_the_same_float32_model():
    """Trained in bfloat16 (per layer: no global policy), published in float32: the same layers
    and weights, float32 throughout, and its folded inference parts compute what it computes."""
    keras.utils.set_random_seed(3)
    ae = model_lib.build_autoencoder(ModelConfig(preset="small", latent_dim=16), 16, "bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    assert ae.get_layer("enc1_conv1").compute_dtype == "bfloat16"
    assert {ae.get_layer(n).compute_dtype for n in (model_lib.BOTTLENECK,
                                                    model_lib.RECONSTRUCTION)} == {"float32"}
    assert model_lib.precision_of(ae) == "bfloat16"
    rng = np.random.default_rng(0)
    for layer in ae.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.5, n), rng.uniform(0.3, 3.0, n)])
    f32 = model_lib.in_float32(ae)
    assert model_lib.precision_of(f32) == "float32" and model_lib.in_float32(f32) is f32
    assert [lay.name for lay in f32.layers] == [lay.name for lay in ae.layers]
    for a, b in zip(f32.weights, ae.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = rng.random((4, 16, 16, 3)).astype(np.float32)
    assert np.abs(np.asarray(f32.predict_on_batch(x)) - ae.predict_on_batch(x)).max() < 0.02
    encoder, decoder = model_lib.inference_parts(ae)  # float32 inference, even from bf16 layers
    assert {lay.compute_dtype for lay in encoder.layers + decoder.layers} == {"float32"}
    np.testing.assert_allclose(decoder.predict_on_batch(encoder.predict_on_batch(x)),
                               f32.predict_on_batch(x), atol=1e-5)


def test_training_precision_auto_follows_the_cpu(monkeypatch):
    from fext.config import TrainConfig
    from fext.encoding import resolve_precision

    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(model_lib, "native_bfloat16", lambda native=native: native)
        assert resolve_precision("auto") == expected
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16").validate()


@pytest.mark.parametrize("decoded_views", [1, 2])
def test_the_trainer_decodes_the_first_views_and_the_autoencoder_every_input(tmp_path,
                                                                             decoded_views):
    """The decoder is the larger half of a step: with one decoded view the trainer reconstructs
    only views 1 (the first half of its inputs), while the autoencoder inside it, saved or
    loaded, still reconstructs every image, with the trainer's weights."""
    ae = model_lib.build_autoencoder(ModelConfig(preset="small", latent_dim=8), 8)
    trainer = model_lib.build_trainer(ae, 0.1, 1e-3, decoded_views=decoded_views)
    x = np.random.default_rng(0).random((6, 8, 8, 3), dtype=np.float32)
    clean = x[:3] if decoded_views == 1 else x
    trainer.train_on_batch(x, [clean, np.full((6, 1), -1.0, np.float32)])
    reconstruction, features = trainer(x)
    assert reconstruction.shape == (len(clean), 8, 8, 3) and features.shape == (6, 8)

    trainer.save(tmp_path / "t.keras")
    for t in (trainer, model_lib.load(tmp_path / "t.keras")):
        inner = model_lib.autoencoder_of(t)
        assert not any(isinstance(layer, model_lib.FirstViews) for layer in inner.layers)
        out = np.asarray(inner(x))
        assert out.shape == x.shape
        np.testing.assert_allclose(out[:len(clean)], np.asarray(reconstruction), atol=1e-6)
