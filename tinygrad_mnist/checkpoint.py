"""Checkpoints: a model's weights, an optimizer's state and a small JSON record, in one .npz file.

Written atomically (a temporary file in the same folder, then os.replace), so a crash or Ctrl-C
mid-write leaves the previous checkpoint as it was. Read with allow_pickle=False: a checkpoint
holds only arrays and one JSON string, and nothing in it is ever unpickled. A SHA-256 of every
array is stored inside, so a truncated, corrupted or edited file is refused, not half-used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMAT = "tinygrad_mnist.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, edited, or of another format."""


class Checkpoint(NamedTuple):
    """What load_checkpoint returns: the model's and the optimizer's arrays, and the JSON record."""

    model_state: dict  # parameter name -> ndarray (a Module's state_dict)
    optimizer_state: dict  # an optimizer's state_dict (may be empty)
    meta: dict  # the JSON record: architecture, epoch, RNG state, arguments, ...


def _digest(arrays):
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checkpoint(path, model_state, optimizer_state=None, **meta):
    """Write a checkpoint to `path` atomically. `meta` must be JSON-serializable (dicts, lists,
    numbers, strings). Returns the Path written."""
    path = Path(path)
    arrays = {f"model/{name}": np.asarray(array) for name, array in model_state.items()}
    arrays.update({f"optimizer/{name}": np.asarray(array) for name, array in (optimizer_state or {}).items()})
    record = {"format": FORMAT, "sha256": _digest(arrays), **meta}
    arrays["meta"] = np.array(json.dumps(record))  # a unicode string array: no pickle needed
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path):
    """Read and verify a checkpoint written by save_checkpoint. Raises CheckpointError (or
    FileNotFoundError) with the reason when the file cannot be trusted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a .npz file): {error}") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path} has no 'meta' record; it was not written by save_checkpoint")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: its 'meta' record is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} has format {found!r}; this version reads {FORMAT!r}")
    if meta.pop("sha256", None) != _digest(arrays):
        raise CheckpointError(f"{path}: its arrays do not match the checksum saved with them; the file was modified or damaged")
    meta.pop("format")
    model_state = {key.removeprefix("model/"): array for key, array in arrays.items() if key.startswith("model/")}
    optimizer_state = {key.removeprefix("optimizer/"): array for key, array in arrays.items() if key.startswith("optimizer/")}
    return Checkpoint(model_state, optimizer_state, meta)
