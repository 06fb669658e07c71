"""The library's one random generator: what initial weights and dropout masks are drawn from.

A layer or function that draws (`nn.Linear`, `nn.Conv2d` and the models built of them for their
initial weights, `F.dropout` and `nn.Dropout` for their masks) takes a numpy Generator of its own
when you pass one, and otherwise draws from `default_generator`. `manual_seed(seed)` seeds that
generator, as `torch.manual_seed` seeds everything PyTorch draws, so a seeded program builds
the same weights and drops the same elements every time it runs.
"""

from __future__ import annotations

import numpy as np

default_generator = np.random.default_rng()  # the same object for the whole run: manual_seed reseeds it in place


def manual_seed(seed):
    """Seed `default_generator`, which draws every initial weight and dropout mask not given a
    generator of its own: it then draws what `np.random.default_rng(seed)` would. Returns it."""
    default_generator.bit_generator.state = np.random.default_rng(seed).bit_generator.state
    return default_generator
