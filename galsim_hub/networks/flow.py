"""Conditional masked autoregressive flow over the VAE latent space (Papamakarios et al. 2017).

The flow models ``p(z | conditions)`` where the conditions are catalog quantities *already
standardised* (zero mean, unit variance over the training set); the caller standardises them.

Each block is a conditional MADE (masked dense layers) giving, for every latent dimension in
the block's autoregressive order, a shift ``m`` and a log-scale ``s`` (softly clipped to
``[-3, 3]`` as in the paper) that depend on the preceding dimensions and on the conditions:

* sampling (sequential over dimensions): ``z_i = u_i * exp(s_i(z_<i, c)) + m_i(z_<i, c)``,
* density (one pass): ``u_i = (z_i - m_i) * exp(-s_i)`` and ``log p(z) = log N(u) - sum s``.

The blocks use alternating orders: the reversed order, then a fixed random permutation drawn
from ``permutation_seed``, and so on. Orders are stored as variables, so they are saved with
the weights. A final fixed affine map ``z = latent_shift + latent_scale * y`` puts the flow at
the scale of the data (identity by default; :meth:`ConditionalMAF.set_latent_normalisation`).
The output layers start at zero, so an untrained flow is the identity map.

Written with Keras 3 operations only (``keras.ops``), so the same layers and saved files run on
the TensorFlow, JAX and PyTorch backends of Keras.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from galsim_hub.networks.layout import block_orders, made_masks

__all__ = ["MADE", "ConditionalMAF", "block_orders", "LOG_SCALE_CLIP"]

LOG_SCALE_CLIP = 3.0
_LOG_2PI = math.log(2.0 * math.pi)


class MADE(keras.layers.Layer):
    """Conditional masked autoencoder giving ``(shift, log_scale)`` of each dimension.

    Inputs are in the natural order: output ``i`` depends on inputs ``0..i-1`` and on all the
    conditions (which enter every hidden layer and the output layer without masks).

    Parameters
    ----------
    latent_dim : int
        Number of autoregressive dimensions.
    n_conditions : int
        Number of conditioning inputs.
    hidden_units : sequence of int
        Widths of the hidden layers (paper: ``(256, 256)``).
    activation : str
        Keras activation of the hidden layers.
    """

    def __init__(self, latent_dim: int, n_conditions: int, hidden_units=(256, 256), activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.n_conditions = int(n_conditions)
        self.hidden_units = tuple(int(h) for h in hidden_units)
        self.activation = keras.activations.get(activation)
        self._masks = [ops.convert_to_tensor(m) for m in made_masks(self.latent_dim, self.hidden_units)]
        widths = (self.latent_dim,) + self.hidden_units + (2 * self.latent_dim,)
        self.kernels: list = []
        self.biases: list = []
        self.condition_kernels: list = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            init = "zeros" if i == len(widths) - 2 else "glorot_uniform"
            weights = (
                self.add_weight((n_in, n_out), initializer=init, name=f"kernel_{i}"),
                self.add_weight((n_out,), initializer="zeros", name=f"bias_{i}"),
                self.add_weight((self.n_conditions, n_out), initializer=init, name=f"condition_kernel_{i}"),
            )
            # Named attributes too: TF checkpoints do not follow Keras lists.
            for kind, weight, collection in zip(
                ("kernel", "bias", "condition_kernel"), weights, (self.kernels, self.biases, self.condition_kernels)
            ):
                setattr(self, f"{kind}_{i}", weight)
                collection.append(weight)
        self.built = True

    def call(self, inputs):
        """``inputs = (x, conditions)`` -> ``(shift, log_scale)``, each ``[N, latent_dim]``.

        The log-scale is softly clipped to ``(-3, 3)``. One tuple argument, so that SavedModel
        export can trace the layer.
        """
        x, conditions = inputs
        h = x
        n_layers = len(self.kernels)
        for i in range(n_layers):
            h = (
                ops.matmul(h, self.kernels[i] * self._masks[i])
                + self.biases[i]
                + ops.matmul(conditions, self.condition_kernels[i])
            )
            if i < n_layers - 1:
                h = self.activation(h)
        shift, raw_log_scale = ops.split(h, 2, axis=-1)
        log_scale = LOG_SCALE_CLIP * ops.tanh(raw_log_scale / LOG_SCALE_CLIP)
        return shift, log_scale


class ConditionalMAF(keras.Model):
    """Conditional masked autoregressive flow ``p(z | c)`` with a standard normal base.

    Parameters
    ----------
    latent_dim : int
        Dimension of ``z``.
    n_conditions : int
        Number of (standardised) conditions ``c``.
    n_blocks : int
        Number of MADE blocks (paper: 8).
    hidden_units : sequence of int
        Hidden layers of each MADE (paper: ``(256, 256)``).
    permutation_seed : int
        Seed of the fixed random orders of the odd blocks.
    activation : str
        Activation of the MADE hidden layers.

    Examples
    --------
    >>> flow = ConditionalMAF(latent_dim=16, n_conditions=3)
    >>> z = flow.sample(noise, conditions)          # doctest: +SKIP
    >>> log_p = flow.log_prob(z, conditions)        # doctest: +SKIP
    """

    def __init__(
        self,
        latent_dim: int,
        n_conditions: int,
        n_blocks: int = 8,
        hidden_units=(256, 256),
        permutation_seed: int = 0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.n_conditions = int(n_conditions)
        self.architecture = {
            "latent_dim": self.latent_dim,
            "n_conditions": self.n_conditions,
            "n_blocks": int(n_blocks),
            "hidden_units": [int(h) for h in hidden_units],
            "activation": activation,
            "permutation_seed": int(permutation_seed),
        }
        orders = block_orders(self.latent_dim, n_blocks, permutation_seed)
        self.orders = self.add_weight(
            shape=orders.shape,
            dtype="int32",
            trainable=False,
            initializer=keras.initializers.Constant(orders),
            name="orders",
        )
        self.latent_shift = self.add_weight(
            shape=(self.latent_dim,), initializer="zeros", trainable=False, name="latent_shift"
        )
        self.latent_scale = self.add_weight(
            shape=(self.latent_dim,), initializer="ones", trainable=False, name="latent_scale"
        )
        self.blocks = []
        for b in range(n_blocks):
            block = MADE(self.latent_dim, self.n_conditions, hidden_units, activation, name=f"made_{b}")
            setattr(self, f"made_{b}", block)  # TF checkpoints do not follow Keras lists
            self.blocks.append(block)
        self.log_prob(
            np.zeros((1, self.latent_dim), np.float32), np.zeros((1, self.n_conditions), np.float32)
        )  # create the variables
        self.built = True

    @classmethod
    def from_architecture(cls, architecture: dict) -> "ConditionalMAF":
        """Build a flow from the dict stored next to its checkpoints."""
        return cls(**architecture)

    def set_latent_normalisation(self, shift, scale) -> None:
        """Set the final affine map ``z = shift + scale * y`` (e.g. the latents' mean and std)."""
        scale = np.asarray(scale, np.float32)
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("latent scale must be finite and positive")
        self.latent_shift.assign(np.asarray(shift, np.float32))
        self.latent_scale.assign(scale)

    def _conditions(self, conditions, n):
        if self.n_conditions == 0:
            return ops.zeros((n, 0), "float32")
        return ops.convert_to_tensor(conditions, "float32")

    def _block_forward(self, block, order, u, conditions):
        """Sampling direction of one block (sequential, ``latent_dim`` MADE passes)."""
        u_ordered = ops.take(u, order, axis=-1)
        x = ops.zeros_like(u_ordered)
        for _ in range(self.latent_dim):
            shift, log_scale = block((x, conditions))
            x = u_ordered * ops.exp(log_scale) + shift
        return ops.take(x, ops.argsort(order), axis=-1)

    def _block_inverse(self, block, order, x, conditions):
        """Density direction of one block: returns ``(u, sum of log-scales)``."""
        x_ordered = ops.take(x, order, axis=-1)
        shift, log_scale = block((x_ordered, conditions))
        u = (x_ordered - shift) * ops.exp(-log_scale)
        return ops.take(u, ops.argsort(order), axis=-1), ops.sum(log_scale, axis=-1)

    def sample(self, noise, conditions):
        """Map standard normal base noise to latent codes.

        Parameters
        ----------
        noise : array_like
            ``[N, latent_dim]`` float32 standard normal draws (a tensor of the Keras backend).
        conditions : array_like
            ``[N, n_conditions]`` float32 standardised conditions.

        Returns
        -------
        tensor
            ``[N, latent_dim]`` latent codes, a tensor of the Keras backend.
        """
        z = ops.convert_to_tensor(noise, "float32")
        conditions = self._conditions(conditions, ops.shape(z)[0])
        for b, block in enumerate(self.blocks):
            z = self._block_forward(block, self.orders[b], z, conditions)
        return self.latent_shift + self.latent_scale * z

    def inverse(self, z, conditions):
        """Map latent codes back to base noise; returns ``(noise, log|det d noise / d z|)``."""
        z = ops.convert_to_tensor(z, "float32")
        conditions = self._conditions(conditions, ops.shape(z)[0])
        y = (z - self.latent_shift) / self.latent_scale
        log_det = -ops.sum(ops.log(self.latent_scale)) * ops.ones_like(z[:, 0])
        for b in reversed(range(len(self.blocks))):
            y, sum_log_scale = self._block_inverse(self.blocks[b], self.orders[b], y, conditions)
            log_det = log_det - sum_log_scale
        return y, log_det

    def log_prob(self, z, conditions):
        """Log-density ``log p(z | conditions)``, ``[N]``."""
        u, log_det = self.inverse(z, conditions)
        base = -0.5 * ops.sum(ops.square(u) + _LOG_2PI, axis=-1)
        return base + log_det

    def call(self, inputs):
        """``inputs = (z, conditions)`` -> ``log_prob`` ``[N]``."""
        z, conditions = inputs
        return self.log_prob(z, conditions)
