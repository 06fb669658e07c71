"""Checkpoints: a model's weights, an optimizer's state and a small JSON record, in one .npz file.

The file is an ordinary uncompressed .npz (`np.load` opens it) with three kinds of members:
  meta.npy       the record, JSON text: the format, every array's name, dtype and shape, and the
                 caller's own fields (epoch, settings, RNG state, layer sizes, ...)
  sha256.npy     a SHA-256 of the record's exact text followed by every array's bytes
  model/*.npy, optimizer/*.npy   the arrays

Writing refuses arrays that are not finite and goes through write_atomically. Reading leans on
zipfile (the directory, each member's CRC-32) and np.load(..., allow_pickle=False), and first
checks what they do not: every member stored, not encrypted, named once; the record's arrays no
bigger than the file; each .npy header the one numpy writes for the record's dtype and shape, and
the member exactly that size; then the checksum. Whatever the bytes, it raises only
CheckpointError (or FileNotFoundError) and allocates no more than the file's size in arrays.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import tokenize
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import write_atomically

FORMAT = "tinygrad_mnist.checkpoint/2"
OLDER_FORMATS = ("tinygrad_mnist.checkpoint/1",)  # its record was not under the checksum
MAX_RECORD_CHARS = 1 << 20  # the record is settings and an RNG state: a few KB; 1 M chars is generous
MAX_NPY_HEADER_BYTES = 1024  # numpy writes 128; past ~5,000, Python's parser raises MemoryError on "----1"
# the dtypes a state_dict holds: booleans, integers and floats, no objects, strings or structures
ARRAY_DTYPE = re.compile(r"[<>|](b1|[iu][1248]|f[248])")
# zipfile's and numpy's own refusals of a damaged file (OverflowError: a shape such as (0, 10**30))
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
               OSError, OverflowError, SyntaxError, TypeError, KeyError, IndexError, tokenize.TokenError)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, edited, or of another format, or cannot
    be written where it was asked to go."""


class Checkpoint(NamedTuple):
    """What load_checkpoint returns: the model's and the optimizer's arrays, and the JSON record."""

    model_state: dict  # parameter name -> ndarray (a Module's state_dict)
    optimizer_state: dict  # an optimizer's state_dict (may be empty)
    meta: dict  # the caller's JSON record: architecture, epoch, RNG state, arguments, ...


def _checksum(record, arrays):
    """The SHA-256 of the record's exact text followed by every array's bytes, in the record's order."""
    digest = hashlib.sha256(record.encode())
    for array in arrays.values():
        digest.update(array.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------- writing


def save_checkpoint(path, model_state, optimizer_state=None, **meta):
    """Write a checkpoint to `path` atomically and return the Path written. `meta` must be
    JSON-serializable (dicts, lists, numbers, strings); it is stored under the checksum with the
    arrays. Raises CheckpointError, with one line, when an array is not finite or the file cannot
    be written (the previous checkpoint at `path` is then left as it was)."""
    path = Path(path)
    arrays = {}
    for prefix, state in (("model", model_state), ("optimizer", optimizer_state or {})):
        for name, array in state.items():
            array = np.ascontiguousarray(array).reshape(np.shape(array))  # fortran_order False; 0-d stays 0-d
            if not ARRAY_DTYPE.fullmatch(array.dtype.str):
                raise CheckpointError(f"cannot save {prefix} state {name!r} of dtype {array.dtype}: "
                                      "a checkpoint holds bool, int and float arrays")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise CheckpointError(f"refusing to save {path}: {prefix} state {name!r} holds NaN or Inf (training diverged); "
                                      "the previous checkpoint is kept")
            arrays[f"{prefix}/{name}"] = array
    try:
        record = json.dumps({"format": FORMAT,
                             "arrays": {key: [array.dtype.str, list(array.shape)] for key, array in arrays.items()},
                             "meta": meta}, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot save {path}: its record must be JSON "
                              f"(dicts, lists, finite numbers, strings): {error}") from None
    members = {"meta": np.array(record), "sha256": np.array(_checksum(record, arrays)), **arrays}
    _make_folder(path, "save")
    try:
        return write_atomically(path, lambda file: np.savez(file, **members))
    except OSError as error:
        raise CheckpointError(f"cannot save {path}: {_os_problem(error)}; the previous checkpoint is unchanged") from None


def _make_folder(path, verb):
    """Refuse a folder at `path`; make its parent folder, or say in one line why it cannot be made."""
    if path.is_dir():
        raise CheckpointError(f"cannot save to {path}: it is a folder; give a file path such as {path / 'run.npz'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot {verb} {path}: {_folder_problem(path.parent, error)}") from None


def _folder_problem(folder, error):
    """Why `folder` cannot hold a file: the first part of it that is a file, or the OS's reason."""
    for part in [folder, *folder.parents]:
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a folder"
            break
    return f"its folder {folder} cannot be made ({_os_problem(error)})"


def _os_problem(error):
    """An OSError as a short reason with a hint: disk full, read-only, no permission, ..."""
    hints = {errno.ENOSPC: "the disk is full; free some space or save elsewhere",
             errno.EDQUOT: "the disk quota is exceeded; free some space or save elsewhere",
             errno.EROFS: "the file system is read-only; save elsewhere",
             errno.EACCES: "permission denied; save to a folder you can write to",
             errno.EPERM: "permission denied; save to a folder you can write to",
             errno.EISDIR: "a folder is in the way; give a file path",
             errno.ENOTDIR: "part of the path is a file, not a folder"}
    return hints.get(error.errno, error.strerror or str(error))


def check_save_target(path, overwrite=False, resuming=None):
    """Check, before training starts, that a checkpoint can be saved at `path`: not a folder, its
    folder exists or can be made and is writable, and no existing file would be replaced unless
    it is `resuming` (the checkpoint this run continues) or `overwrite` is True. Makes the folder
    if needed. Raises CheckpointError with one line naming the problem and what to do."""
    path = Path(path)
    _make_folder(path, "save to")
    if path.exists() and not overwrite and not (resuming is not None and same_file(path, resuming)):
        raise CheckpointError(f"{path} already exists and is not the checkpoint being resumed; "
                              "choose another path, or pass --overwrite to replace it")
    try:  # the only sure test of a folder being writable (permissions, read-only mounts, root) is to write
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise CheckpointError(f"cannot save to {path}: {_os_problem(error)}") from None
    return path


def same_file(first, second):
    """Whether two paths name one file: the same inode where both exist, else the same resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()


# ----------------------------------------------------------------------------------------- reading


def load_checkpoint(path):
    """Read and verify a checkpoint written by save_checkpoint. Raises FileNotFoundError when there
    is no file at `path`, and CheckpointError, with the reason, for anything else that cannot be
    trusted: whatever the bytes, no other exception, and no arrays beyond the file's size."""
    path = Path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # opening a named pipe would wait for a writer forever
            raise CheckpointError("is a folder, not a checkpoint file" if stat.S_ISDIR(status.st_mode)
                                  else "is not a regular file, so not a checkpoint")
        with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
            return _read(archive, status.st_size)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except NotADirectoryError:
        raise FileNotFoundError(f"no checkpoint at {path}: part of that path is a file, not a folder") from None
    except PermissionError:
        raise CheckpointError(f"cannot read {path}: permission denied") from None
    except CheckpointError as reason:
        raise CheckpointError(f"{path}: {reason}") from None
    except READ_ERRORS as error:
        raise CheckpointError(f"{path}: not a readable checkpoint (not a .npz file, truncated or damaged): "
                              f"{_quoted(str(error))}") from None


def _quoted(value):
    """A name or value from the file, quoted and cut short, so an error message stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read(archive, file_size):
    members = {}
    for info in archive.infolist():  # every member as np.savez writes it, from the zip directory
        name = _quoted(info.filename)
        if info.flag_bits & 0x1:
            raise CheckpointError(f"member {name} is marked encrypted; a checkpoint is never encrypted")
        if info.compress_type != zipfile.ZIP_STORED:  # so no member holds more bytes than the file
            raise CheckpointError(f"member {name} uses zip compression method {info.compress_type}; "
                                  "a checkpoint is stored uncompressed (was it rewritten by another tool?)")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"member {name} declares {info.file_size} bytes, more than the file holds; "
                                  "it is truncated or damaged")
        if members.setdefault(info.filename, info) is not info:
            raise CheckpointError(f"member {name} appears twice; the file was modified")
    if "meta.npy" not in members:
        raise CheckpointError("not a checkpoint: it has no 'meta' record (it was not written by save_checkpoint)")
    text = _read_member(archive, members["meta.npy"]).tobytes().decode("utf-32-le")  # str() takes any code point
    record = _parse_record(text, file_size)
    expected = {"meta.npy", "sha256.npy", *(f"{name}.npy" for name in record["arrays"])}
    if set(members) != expected:
        names = ", ".join(map(_quoted, sorted(set(members) ^ expected)[:3]))
        raise CheckpointError(f"its members do not match its record (unexpected or missing: {names}); the file was modified")
    arrays = {name: _read_member(archive, members[f"{name}.npy"], np.dtype(dtype), tuple(shape))
              for name, (dtype, shape) in record["arrays"].items()}
    if _read_member(archive, members["sha256.npy"], np.dtype("<U64")) != _checksum(text, arrays):
        raise CheckpointError("its record and arrays do not match the checksum saved with them; "
                              "the file was modified or damaged")
    states = {prefix: {key.removeprefix(prefix): array for key, array in arrays.items() if key.startswith(prefix)}
              for prefix in ("model/", "optimizer/")}
    return Checkpoint(states["model/"], states["optimizer/"], record["meta"])


def _read_member(archive, info, dtype=None, shape=()):
    """One member, read by np.load (never unpickling) only once its .npy header is, byte for byte,
    the one numpy writes for the record's `dtype` and `shape`, and its size in the zip directory is
    what they need: so np.load allocates nothing the file does not hold. Without a dtype: the
    record, text of at most MAX_RECORD_CHARS characters whose length numpy's parse of the header gives."""
    name = _quoted(info.filename)
    with archive.open(info) as member:
        if dtype is None:
            np.lib.format.read_magic(member)
            dtype = np.lib.format.read_array_header_1_0(member, max_header_size=MAX_NPY_HEADER_BYTES)[2]
            if dtype.str[:2] != "<U" or dtype.itemsize > 4 * MAX_RECORD_CHARS:
                raise CheckpointError(f"member {name} is not text of at most {MAX_RECORD_CHARS} characters")
            member.seek(0)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": dtype.str, "fortran_order": False, "shape": shape})
        header = header.getvalue()
        if member.read(len(header)) != header:
            raise CheckpointError(f"member {name} has a damaged .npy header; its record says {dtype.str} {_quoted(shape)}")
        size = len(header) + dtype.itemsize * math.prod(shape)
        if info.file_size != size:
            raise CheckpointError(f"member {name} holds {info.file_size} bytes; its record says {size}")
        member.seek(0)
        return np.load(member, allow_pickle=False)  # reading to the member's end makes zipfile check its CRC-32


def _parse_record(text, file_size):
    """The record as a dict, its types checked before anything in it is used."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"its 'meta' record is not valid JSON ({str(error)[:80]})") from None
    found = record.get("format") if isinstance(record, dict) else None
    if found in OLDER_FORMATS:
        raise CheckpointError(f"made by an older version of tinygrad_mnist (format {found!r}), whose record was not "
                              "under the checksum; this version reads only checkpoints it can verify: train again")
    if found != FORMAT:
        raise CheckpointError(f"has format {_quoted(found)}; this version reads {FORMAT!r}")
    if set(record) != {"format", "arrays", "meta"} or not all(isinstance(record[key], dict) for key in ("arrays", "meta")):
        raise CheckpointError("its record lacks its 'arrays' or 'meta' table; the file was modified")
    total_bytes = 0
    for name, entry in record["arrays"].items():
        if not (name.startswith(("model/", "optimizer/")) and isinstance(entry, list) and len(entry) == 2
                and isinstance(entry[0], str) and ARRAY_DTYPE.fullmatch(entry[0]) and isinstance(entry[1], list)
                and len(entry[1]) <= 32 and all(type(size) is int and size >= 0 for size in entry[1])):
            raise CheckpointError(f"its record describes array {_quoted(name)} as {_quoted(entry)}, not [dtype, shape]; "
                                  "the file was modified")
        total_bytes += np.dtype(entry[0]).itemsize * math.prod(entry[1])  # Python ints: 10**12 elements do not overflow
        if total_bytes > file_size:  # stored uncompressed: the arrays cannot be bigger than the file
            raise CheckpointError(f"its record declares more array bytes ({total_bytes}) than the file holds "
                                  f"({file_size}); the file was modified")
    return record
