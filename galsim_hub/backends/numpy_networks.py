"""The networks of a format-3 model evaluated in NumPy alone, from its Keras-native file.

``model.keras`` is a zip archive of ``config.json`` (the :class:`~galsim_hub.networks.generator.GalaxyGenerator`
architecture) and ``model.weights.h5``, whose groups Keras 3 names after each layer: an attribute
name where the layer is first reached by its attribute, else ``layers/<class>_<k>`` (the k-th
layer of that class in the model's layer list; ``k = 0`` has no suffix). `GeneratorWeights`
reads them by those names and checks that every array is used, with the shape the architecture
gives it, so a file of another layout is refused rather than misread.

The arithmetic is that of :mod:`galsim_hub.networks.convolutional` and
:mod:`galsim_hub.networks.flow` (``"same"``-padded convolutions as Keras pads them, half-pixel
bilinear upsampling, the stage depths and MADE masks of :mod:`galsim_hub.networks.layout`), in float32.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from galsim_hub.networks.layout import made_masks, stage_depths

__all__ = ["GeneratorWeights", "ACTIVATIONS"]

#: The Keras activations the NumPy runtime evaluates, by their Keras names.
ACTIVATIONS = {
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1 + np.tanh(0.5 * x)),
    "softplus": lambda x: np.logaddexp(np.float32(0), x),
    "silu": lambda x: x * 0.5 * (1 + np.tanh(0.5 * x)),
    "linear": lambda x: x,
}
#: Rows decoded at once (bounds the memory of the convolutions' feature maps).
CHUNK = 64
_LOG_SCALE_CLIP = np.float32(3.0)


def _layer_name(class_name: str, index: int) -> str:
    return class_name if index == 0 else f"{class_name}_{index}"


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"the numpy backend does not evaluate the activation {name!r} (it knows {sorted(ACTIVATIONS)})"
        )
    return ACTIVATIONS[name]


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int = 1) -> np.ndarray:
    """Keras ``Conv2D(padding="same")`` of ``[N, H, W, C]`` maps with a ``[k, k, C, O]`` kernel."""
    size = kernel.shape[0]
    height, width = x.shape[1:3]
    out_h, out_w = -(-height // stride), -(-width // stride)
    # Keras (as TensorFlow) pads "same" with the extra row and column after, not before.
    pad_h = max((out_h - 1) * stride + size - height, 0)
    pad_w = max((out_w - 1) * stride + size - width, 0)
    padded = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.empty((x.shape[0], out_h, out_w, kernel.shape[3]), np.float32)
    out[...] = bias
    for dy in range(size):
        for dx in range(size):
            window = padded[:, dy : dy + stride * out_h : stride, dx : dx + stride * out_w : stride, :]
            out += window @ kernel[dy, dx]
    return out


def upsample_bilinear(x: np.ndarray) -> np.ndarray:
    """Keras ``UpSampling2D(2, interpolation="bilinear")``: half-pixel centres, edges clamped."""
    for axis in (1, 2):
        before = np.concatenate([np.take(x, [0], axis=axis), np.take(x, np.arange(x.shape[axis] - 1), axis=axis)], axis)
        after = np.concatenate([np.take(x, np.arange(1, x.shape[axis]), axis=axis), np.take(x, [-1], axis=axis)], axis)
        even = np.float32(0.75) * x + np.float32(0.25) * before
        odd = np.float32(0.75) * x + np.float32(0.25) * after
        x = np.stack([even, odd], axis=axis + 1).reshape(x.shape[:axis] + (2 * x.shape[axis],) + x.shape[axis + 1 :])
    return x


class GeneratorWeights:
    """The architecture and weights of a ``model.keras`` file, and its networks in NumPy.

    Parameters
    ----------
    path : str or os.PathLike
        The Keras-native file of a format-3 model.

    Raises
    ------
    ValueError
        If the file is not a galsim-hub ``GalaxyGenerator``, or its weights are not laid out as
        its architecture says.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
        if config.get("registered_name") != "galsim_hub>GalaxyGenerator":
            raise ValueError(f"{path} holds a {config.get('registered_name')!r}, not a galsim-hub GalaxyGenerator")
        self.config = config["config"]
        with h5py.File(io.BytesIO(weights), "r") as store:
            self._arrays: dict[str, np.ndarray] = {}
            store.visititems(self._collect)
        self._used: set[str] = set()
        self.decoder = self._decoder_weights(self.config["decoder"])
        self.flow = self._flow_weights(self.config["flow"])
        self.encoder = None if self.config.get("encoder") is None else self._encoder_weights(self.config["encoder"])
        self.condition_mean = self._take("vars/0", (self.flow["n_conditions"],))
        self.condition_std = self._take("vars/1", (self.flow["n_conditions"],))
        unused = sorted(set(self._arrays) - self._used)
        if unused:
            raise ValueError(f"{path}: weights the architecture has no place for: {', '.join(unused[:5])}")

    def _collect(self, name: str, item) -> None:
        if hasattr(item, "shape"):
            self._arrays[name] = np.asarray(item[()])

    def _take(self, name: str, shape: tuple) -> np.ndarray:
        if name not in self._arrays:
            raise ValueError(f"model.weights.h5 has no {name} (a weights layout the numpy backend does not know)")
        array = self._arrays[name]
        if array.shape != tuple(shape):
            raise ValueError(f"model.weights.h5: {name} has shape {array.shape}, the architecture gives {tuple(shape)}")
        self._used.add(name)
        return array if array.dtype.kind == "i" else array.astype(np.float32)

    def _conv(self, group: str, size: int, depth_in: int, depth_out: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            self._take(f"{group}/vars/0", (size, size, depth_in, depth_out)),
            self._take(f"{group}/vars/1", (depth_out,)),
        )

    def _blocks(self, prefix: str, depths: list[int], per_stage: int) -> list[list]:
        """Residual blocks ``layers/residual_block_<k>``, stage by stage."""
        blocks, k = [], 0
        for depth in depths:
            stage = []
            for _ in range(per_stage):
                group = f"{prefix}/layers/{_layer_name('residual_block', k)}"
                stage.append(
                    (self._conv(f"{group}/conv1", 3, depth, depth), self._conv(f"{group}/conv2", 3, depth, depth))
                )
                k += 1
            blocks.append(stage)
        return blocks

    def _decoder_weights(self, arch: dict) -> dict:
        stages = arch["num_stages"]
        depths = stage_depths(stages, arch["base_depth"], arch["max_depth"])
        bottom = arch["stamp_size"] // 2**stages
        up_depths = [depths[i] for i in reversed(range(stages))]
        inputs = [depths[-1]] + up_depths[:-1]
        return {
            "arch": arch,
            "bottom": (bottom, depths[-1]),
            "project": (
                self._take("decoder/layers/dense/vars/0", (arch["latent_dim"], bottom**2 * depths[-1])),
                self._take("decoder/layers/dense/vars/1", (bottom**2 * depths[-1],)),
            ),
            "convs": [
                self._conv(f"decoder/layers/{_layer_name('conv2d', i)}", 3, inputs[i], up_depths[i])
                for i in range(stages)
            ],
            "blocks": self._blocks("decoder", up_depths, arch["blocks_per_stage"]),
            "to_image": self._conv(f"decoder/layers/{_layer_name('conv2d', stages)}", 3, depths[0], arch["n_bands"]),
        }

    def _encoder_weights(self, arch: dict) -> dict:
        stages, base, bands = arch["num_stages"], arch["base_depth"], arch["n_bands"]
        depths = stage_depths(stages, base, arch["max_depth"])
        flat = (arch["stamp_size"] // 2**stages) ** 2 * depths[-1]
        return {
            "arch": arch,
            "image_stem": self._conv("encoder/image_stem", 3, bands, base),
            "psf_stem": self._conv("encoder/layers/conv2d_1", 3, bands, base),
            "merge": self._conv("encoder/layers/conv2d_2", 1, 2 * base, depths[0]),
            "blocks": self._blocks("encoder", depths[:-1], arch["blocks_per_stage"]),
            "down": [self._conv(f"encoder/downsample{i}", 3, depths[i], depths[i + 1]) for i in range(stages)],
            "head": (
                self._take("encoder/head/vars/0", (flat, 2 * arch["latent_dim"])),
                self._take("encoder/head/vars/1", (2 * arch["latent_dim"],)),
            ),
        }

    def _flow_weights(self, arch: dict) -> dict:
        latent, n_cond, hidden = arch["latent_dim"], arch["n_conditions"], list(arch["hidden_units"])
        widths = [latent] + hidden + [2 * latent]
        masks = made_masks(latent, hidden)
        blocks = []
        for b in range(arch["n_blocks"]):
            group = f"flow/blocks/{_layer_name('made', b)}/vars"
            layers = []
            for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
                kernel = self._take(f"{group}/{3 * i}", (n_in, n_out)) * masks[i]
                bias = self._take(f"{group}/{3 * i + 1}", (n_out,))
                layers.append((kernel, bias, self._take(f"{group}/{3 * i + 2}", (n_cond, n_out))))
            blocks.append(layers)
        return {
            "latent_dim": latent,
            "n_conditions": n_cond,
            "activation": _activation(arch.get("activation", "relu")),
            "orders": self._take("flow/vars/0", (arch["n_blocks"], latent)).astype(np.intp),
            "shift": self._take("flow/vars/1", (latent,)),
            "scale": self._take("flow/vars/2", (latent,)),
            "blocks": blocks,
        }

    def sample(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Light profiles ``[N, S, S, B]`` of raw conditions ``[N, C]`` and base noise ``[N, L]``."""
        standardised = (np.asarray(conditions, np.float32) - self.condition_mean) / self.condition_std
        return self.decode(self.flow_sample(np.asarray(noise, np.float32), standardised))

    def flow_sample(self, noise: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """The flow's map of base noise to latent codes, given standardised conditions."""
        flow = self.flow
        z = noise
        for order, layers in zip(flow["orders"], flow["blocks"]):
            u = z[:, order]
            x = np.zeros_like(u)
            for _ in range(flow["latent_dim"]):
                shift, log_scale = self._made(layers, x, conditions)
                x = u * np.exp(log_scale) + shift
            z = x[:, np.argsort(order)]
        return flow["shift"] + flow["scale"] * z

    def _made(self, layers: list, x: np.ndarray, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = x
        for i, (kernel, bias, condition_kernel) in enumerate(layers):
            h = h @ kernel + bias + conditions @ condition_kernel
            if i < len(layers) - 1:
                h = self.flow["activation"](h)
        shift, raw = np.split(h, 2, axis=-1)
        return shift, _LOG_SCALE_CLIP * np.tanh(raw / _LOG_SCALE_CLIP)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Non-negative light profiles ``[N, S, S, B]`` of latent codes ``z`` ``[N, L]``."""
        z = np.asarray(z, np.float32)
        return np.concatenate([self._decode_chunk(z[i : i + CHUNK]) for i in range(0, max(len(z), 1), CHUNK)])

    def _decode_chunk(self, z: np.ndarray) -> np.ndarray:
        net = self.decoder
        act = _activation(net["arch"]["activation"])
        size, depth = net["bottom"]
        x = (z @ net["project"][0] + net["project"][1]).reshape(-1, size, size, depth)
        for conv, stage in zip(net["convs"], net["blocks"]):
            x = conv2d(upsample_bilinear(act(x)), *conv)
            for block in stage:
                x = self._residual(block, x, act)
        image = np.logaddexp(np.float32(0), conv2d(act(x), *net["to_image"])) * np.float32(net["arch"]["image_scale"])
        return np.maximum(image, 0)

    @staticmethod
    def _residual(block, x: np.ndarray, act) -> np.ndarray:
        first, second = block
        return x + conv2d(act(conv2d(act(x), *first)), *second)

    def encode(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        """Posterior-mean latent codes ``[N, L]`` of observed stamps and their PSFs ``[N, S, S(, B)]``."""
        net = self.encoder
        if net is None:
            raise ValueError("this model was exported without an encoder")
        act = _activation(net["arch"]["activation"])
        image, psf = (np.asarray(a, np.float32) for a in (image, psf))
        image, psf = (a[..., None] if a.ndim == 3 else a for a in (image, psf))
        image = image / np.float32(net["arch"]["image_scale"])
        psf = psf / psf.max(axis=(1, 2), keepdims=True)
        x = np.concatenate([conv2d(image, *net["image_stem"]), conv2d(psf, *net["psf_stem"])], axis=-1)
        x = conv2d(act(x), *net["merge"])
        for stage, down in zip(net["blocks"], net["down"]):
            for block in stage:
                x = self._residual(block, x, act)
            kernel, bias = down
            x = conv2d(act(x), kernel, bias, stride=2)
        params = act(x).reshape(len(x), -1) @ net["head"][0] + net["head"][1]
        return params[:, : net["arch"]["latent_dim"]]
