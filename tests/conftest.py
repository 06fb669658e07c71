"""Shared fixtures: where the real MNIST files are, Fashion-MNIST, and whether graphviz's `dot` is installed.

Tests that need the MNIST files use the `mnist_dir` fixture (the repository ships them in
data/mnist/); tests that need Fashion-MNIST use the `fashion_mnist` fixture (found where the loader
looks, Debian's dataset-fashion-mnist package included; never downloaded here). Without the files
they skip with the reason, except when TINYGRAD_MNIST_REQUIRE_DATA=1 (set by .ci/run): then a skip
is a failure, so CI cannot pass by quietly running nothing.
"""

import os
import shutil
from pathlib import Path

import pytest

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _skip_or_fail(reason, variable="TINYGRAD_MNIST_REQUIRE_DATA"):
    if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (and {variable}=1 forbids skipping)")
    pytest.skip(reason)


def _has_mnist(directory):
    return all(
        (directory / name).exists() or (directory / (name + ".gz")).exists() for name in MNIST_FILES
    )


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder with the four MNIST files, from TINYGRAD_MNIST_DATA or the repo's data/mnist/."""
    candidates = []
    if os.environ.get("TINYGRAD_MNIST_DATA"):
        candidates.append(Path(os.environ["TINYGRAD_MNIST_DATA"]))
    candidates.append(Path(__file__).resolve().parent.parent / "data" / "mnist")
    for directory in candidates:
        if _has_mnist(directory):
            return directory
    _skip_or_fail(
        "MNIST files not found in " + ", ".join(str(c) for c in candidates)
        + "; set TINYGRAD_MNIST_DATA to a folder holding them"
    )


@pytest.fixture(scope="session")
def fashion_mnist():
    """Fashion-MNIST as load_dataset finds it without downloading (tests must not need the network)."""
    from tinygrad_mnist.lab.datasets import DatasetNotFoundError, load_dataset

    try:
        return load_dataset("fashion-mnist", download=False)
    except DatasetNotFoundError as error:
        where = str(error).splitlines()[0]
        _skip_or_fail(
            f"Fashion-MNIST files not found ({where}); apt-get install dataset-fashion-mnist, or put "
            "the four files in data/fashion-mnist/"
        )


@pytest.fixture(scope="session")
def dot_program():
    """Path of graphviz's `dot`; tests that render skip without it (CI installs it)."""
    path = shutil.which("dot")
    if path is None:
        _skip_or_fail("graphviz `dot` is not installed (apt-get install graphviz)", "CI")
    return path
