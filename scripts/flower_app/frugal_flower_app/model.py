"""Parameter names and shapes of Frugal's models, as `frugal fl join` maps them."""

import numpy as np


def layout(model: str) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the trainable parameters of `model` on 1x28x28 images, 10 classes."""
    if model == "lenet":  # conv 5x5 32, pool, conv 5x5 64, pool, fc 1024->512, fc 512->10
        return [("conv1.weight", (32, 1, 5, 5)), ("conv1.bias", (32,)),
                ("conv2.weight", (64, 32, 5, 5)), ("conv2.bias", (64,)),
                ("fc1.weight", (512, 1024)), ("fc1.bias", (512,)),
                ("fc2.weight", (10, 512)), ("fc2.bias", (10,))]
    if model == "mlp":  # flatten, fc 784->64, ReLU, fc 64->10
        return [("0.weight", (64, 784)), ("0.bias", (64,)), ("1.weight", (10, 64)), ("1.bias", (10,))]
    raise ValueError(f"unknown model {model!r}: use lenet or mlp")


def initial_arrays(model: str, seed: int) -> dict[str, np.ndarray]:
    """PyTorch-style uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights; zero biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in layout(model):
        if name.endswith(".bias"):
            out[name] = np.zeros(shape, dtype=np.float32)
        else:
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out
