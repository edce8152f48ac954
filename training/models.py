"""Keras 3 models: a VAE (dense or Conv1D) and the TensorFlow tutorial's plain autoencoder.

The VAE has a Gaussian reconstruction likelihood whose variance, shared by all features, is
set to its maximum-likelihood value for each batch (the "sigma-VAE" of Rybkin et al., 2021):
the reconstruction term is ``0.5 * T * C * log(mse)``. A fixed unit variance lets the KL term
win and the posterior collapses; a learned per-feature variance converges slowly; the
closed form needs no tuning. ``beta`` scales the KL term.

Only :func:`inference_model` is ever saved: input -> encoder mean -> decoder, built from
built-in layers (Dense, Conv1D, Conv1DTranspose, Flatten, Reshape, Cropping1D), so the
detector loads it with ``safe_mode=True`` and no custom code. The :class:`VAE` class, with
its sampling and losses, exists only while training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Arch",
    "ArchSpec",
    "build_ae_baseline",
    "build_model",
    "build_vae",
    "count_params",
    "ensemble_model",
    "inference_model",
]

Arch = Literal["dense", "conv", "ae-baseline"]
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {
    "dense": (512, 256),
    "conv": (32, 64),
    "ae-baseline": (32, 16, 8),  # the tutorial's 140-32-16-8
}
MSE_FLOOR = 1e-8


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """What to build.

    Attributes:
        arch: ``dense`` or ``conv`` (VAE) or ``ae-baseline`` (the tutorial's dense AE).
        window_size: T.
        n_channels: C.
        latent: latent size (the baseline's last width is its code).
        widths: hidden widths (dense units or Conv1D filters), encoder order; None = default.
        beta: weight of the KL term.
        kernel_size: Conv1D kernel.
        sigmoid_output: the baseline's output activation (the tutorial's, for min-max data).
    """

    arch: Arch
    window_size: int
    n_channels: int
    latent: int = 16
    widths: tuple[int, ...] | None = None
    beta: float = 1.0
    kernel_size: int = 7
    sigmoid_output: bool = False

    @property
    def hidden(self) -> tuple[int, ...]:
        """The widths in use."""
        return self.widths or DEFAULT_WIDTHS[self.arch]

    @property
    def name(self) -> str:
        """``vae-dense``, ``vae-conv`` or ``ae-baseline`` (the manifest's ``arch``)."""
        return self.arch if self.arch == "ae-baseline" else f"vae-{self.arch}"


def _keras() -> Any:
    import keras

    return keras


def _vae_class() -> Any:
    keras = _keras()
    import tensorflow as tf
    from keras import ops

    class VAE(keras.Model):  # type: ignore[misc,name-defined]
        """Encoder (mean, log-variance) + reparameterised sample + decoder, for training only."""

        def __init__(self, encoder: Any, decoder: Any, beta: float, seed: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.decoder = decoder
            self.beta = float(beta)
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.rec_tracker = keras.metrics.Mean(name="reconstruction")
            self.kl_tracker = keras.metrics.Mean(name="kl")

        @property
        def metrics(self) -> list[Any]:
            return [self.loss_tracker, self.rec_tracker, self.kl_tracker]

        def call(self, x: Any, training: bool = False) -> Any:
            z_mean, _ = self.encoder(x, training=training)
            return self.decoder(z_mean, training=training)

        def loss_terms(self, x: Any, training: bool, sample: bool = True) -> tuple[Any, Any]:
            """(reconstruction, KL) terms; ``sample=False`` decodes the posterior mean."""
            z_mean, z_log_var = self.encoder(x, training=training)
            z = z_mean
            if sample:
                eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
                z = z_mean + ops.exp(0.5 * z_log_var) * eps
            x_hat = self.decoder(z, training=training)
            n_features = ops.cast(ops.shape(x)[1] * ops.shape(x)[2], "float32")
            mse = ops.mean(ops.square(x - x_hat))
            rec = 0.5 * n_features * ops.log(mse + MSE_FLOOR)
            kl = ops.mean(
                -0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1)
            )
            return rec, kl

        def _update(self, rec: Any, kl: Any) -> dict[str, Any]:
            self.loss_tracker.update_state(rec + self.beta * kl)
            self.rec_tracker.update_state(rec)
            self.kl_tracker.update_state(kl)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data: Any) -> dict[str, Any]:
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                rec, kl = self.loss_terms(x, training=True)
                loss = rec + self.beta * kl
            grads = tape.gradient(loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            return self._update(rec, kl)

        def test_step(self, data: Any) -> dict[str, Any]:
            x = data[0] if isinstance(data, tuple) else data
            rec, kl = self.loss_terms(x, training=False)
            return self._update(rec, kl)

    return VAE


def _dense_coders(spec: ArchSpec) -> tuple[Any, Any]:
    keras = _keras()
    layers = keras.layers
    t, c = spec.window_size, spec.n_channels
    inp = keras.Input((t, c), name="window")
    h = layers.Flatten(name="flatten")(inp)
    for i, w in enumerate(spec.hidden):
        h = layers.Dense(w, activation="relu", name=f"enc_dense_{i}")(h)
    z_mean = layers.Dense(spec.latent, name="z_mean")(h)
    z_log_var = layers.Dense(spec.latent, name="z_log_var")(h)
    encoder = keras.Model(inp, [z_mean, z_log_var], name="encoder")
    z_in = keras.Input((spec.latent,), name="z")
    h = z_in
    for i, w in enumerate(reversed(spec.hidden)):
        h = layers.Dense(w, activation="relu", name=f"dec_dense_{i}")(h)
    h = layers.Dense(t * c, name="dec_out")(h)
    out = layers.Reshape((t, c), name="reconstruction")(h)
    return encoder, keras.Model(z_in, out, name="decoder")


def _conv_coders(spec: ArchSpec) -> tuple[Any, Any]:
    keras = _keras()
    layers = keras.layers
    t, c, k = spec.window_size, spec.n_channels, spec.kernel_size
    inp = keras.Input((t, c), name="window")
    h = inp
    length = t
    for i, w in enumerate(spec.hidden):
        h = layers.Conv1D(w, k, strides=2, padding="same", activation="relu", name=f"enc_conv_{i}")(
            h
        )
        length = -(-length // 2)
    h = layers.Flatten(name="flatten")(h)
    z_mean = layers.Dense(spec.latent, name="z_mean")(h)
    z_log_var = layers.Dense(spec.latent, name="z_log_var")(h)
    encoder = keras.Model(inp, [z_mean, z_log_var], name="encoder")
    z_in = keras.Input((spec.latent,), name="z")
    h = layers.Dense(length * spec.hidden[-1], activation="relu", name="dec_dense")(z_in)
    h = layers.Reshape((length, spec.hidden[-1]), name="dec_reshape")(h)
    for i, w in enumerate(reversed(spec.hidden)):
        h = layers.Conv1DTranspose(
            w, k, strides=2, padding="same", activation="relu", name=f"dec_deconv_{i}"
        )(h)
    extra = length * 2 ** len(spec.hidden) - t
    if extra:
        h = layers.Cropping1D((0, extra), name="dec_crop")(h)
    out = layers.Conv1D(c, k, padding="same", name="reconstruction")(h)
    return encoder, keras.Model(z_in, out, name="decoder")


def build_vae(spec: ArchSpec, seed: int) -> Any:
    """A compiled-later VAE (``spec.arch`` is ``dense`` or ``conv``), weights seeded."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    encoder, decoder = _dense_coders(spec) if spec.arch == "dense" else _conv_coders(spec)
    vae = _vae_class()(encoder, decoder, beta=spec.beta, seed=seed, name=spec.name)
    vae.build((None, spec.window_size, spec.n_channels))
    return vae


def build_ae_baseline(spec: ArchSpec, seed: int) -> Any:
    """The tutorial's plain dense AE (140-32-16-8 relu, mirrored, sigmoid output on min-max)."""
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    t, c = spec.window_size, spec.n_channels
    inp = keras.Input((t, c), name="window")
    h = layers.Flatten(name="flatten")(inp)
    for i, w in enumerate(spec.hidden):
        h = layers.Dense(w, activation="relu", name=f"enc_dense_{i}")(h)
    for i, w in enumerate(reversed(spec.hidden[:-1])):
        h = layers.Dense(w, activation="relu", name=f"dec_dense_{i}")(h)
    act = "sigmoid" if spec.sigmoid_output else None
    h = layers.Dense(t * c, activation=act, name="dec_out")(h)
    out = layers.Reshape((t, c), name="reconstruction")(h)
    return keras.Model(inp, out, name="ae_baseline")


def build_model(spec: ArchSpec, seed: int) -> Any:
    """:func:`build_vae` or :func:`build_ae_baseline` by ``spec.arch``."""
    return build_ae_baseline(spec, seed) if spec.arch == "ae-baseline" else build_vae(spec, seed)


def inference_model(model: Any, spec: ArchSpec, name: str | None = None) -> Any:
    """The deterministic scorer to export: input -> encoder mean -> decoder.

    For the baseline AE this is the model itself. Built-in layers only.
    """
    if spec.arch == "ae-baseline":
        return model
    keras = _keras()
    inp = keras.Input((spec.window_size, spec.n_channels), name="window")
    encoder_mean = keras.Model(model.encoder.input, model.encoder.outputs[0], name="encoder_mean")
    out = model.decoder(encoder_mean(inp))
    return keras.Model(inp, out, name=name or f"{spec.name.replace('-', '_')}_scorer")


def ensemble_model(models: list[Any], spec: ArchSpec) -> Any:
    """M members' scorers side by side: (B, T, C) -> (B, M, T, C). Built-in layers only."""
    keras = _keras()
    layers = keras.layers
    t, c = spec.window_size, spec.n_channels
    inp = keras.Input((t, c), name="window")
    outs = []
    for k, model in enumerate(models):
        member = inference_model(model, spec, name=f"member_{k}")
        outs.append(layers.Reshape((1, t, c), name=f"member_{k}_out")(member(inp)))
    out = layers.Concatenate(axis=1, name="members")(outs)
    return keras.Model(inp, out, name=f"{spec.name.replace('-', '_')}_ensemble")


def count_params(model: Any, spec: ArchSpec) -> int:
    """Trainable parameters of the exported scorer plus the encoder's log-variance head."""
    if spec.arch == "ae-baseline":
        return int(model.count_params())
    return int(model.encoder.count_params() + model.decoder.count_params())
