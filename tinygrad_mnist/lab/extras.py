"""The optional extras (Pillow, matplotlib, PyTorch): imported when a feature needs one, so the
core installs with numpy alone; a missing one is one line saying how to install it."""

from __future__ import annotations

import importlib


def require(module, missing):
    """The module named `module`, imported now; if it is not installed, raise `missing` (an
    ImportError subclass whose message is the install hint) instead of ImportError's traceback."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing from None
