"""Checkpoints: a model's weights, an optimizer's state and a small JSON record, in one .npz file.

The file is an ordinary uncompressed .npz (`np.load` opens it) with three kinds of members:
  meta.npy       the record, JSON text: the format, every array's name, dtype and shape, and the
                 caller's own fields (epoch, settings, RNG state, layer sizes, ...)
  sha256.npy     a SHA-256 of the record's exact text followed by every array's bytes
  model/*.npy, optimizer/*.npy   the arrays

Writing: refused if an array is not finite (a checkpoint never holds diverged weights); written
to a temporary file in the same folder, then os.replace, so a crash, Ctrl-C or full disk leaves
the previous checkpoint as it was and no temporary file behind.

Reading trusts nothing in the file until it has been checked, and allocates nothing the record
does not declare. zipfile reads the directory and checks each member's CRC-32; numpy parses each
.npy header. Before a member's bytes are read, its directory entry (stored, not encrypted, inside
the file) and its header are compared with the record (bounded in size, read first), then
np.load(..., allow_pickle=False) reads it. Because members are stored uncompressed, the arrays a
file declares can never add up to more than the file's own size. Nothing is ever unpickled.
Whatever the bytes, the reader raises only CheckpointError (or FileNotFoundError).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
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
# the dtypes a state_dict holds: booleans, integers and floats, no objects, strings or structures
MAX_NPY_HEADER_BYTES = 1024  # numpy writes 64 to 128 bytes for the arrays a checkpoint holds
ARRAY_DTYPE = re.compile(r"[<>|](b1|[iu][1248]|f[248])")
# numpy's own errors when it reads a damaged zip or .npy member
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError,
               OSError, UnicodeDecodeError, SyntaxError, TypeError, KeyError, IndexError, tokenize.TokenError)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, edited, or of another format, or cannot
    be written where it was asked to go."""


class Checkpoint(NamedTuple):
    """What load_checkpoint returns: the model's and the optimizer's arrays, and the JSON record."""

    model_state: dict  # parameter name -> ndarray (a Module's state_dict)
    optimizer_state: dict  # an optimizer's state_dict (may be empty)
    meta: dict  # the caller's JSON record: architecture, epoch, RNG state, arguments, ...


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
            array = np.ascontiguousarray(array)  # so every .npy header says fortran_order False
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
    digest = hashlib.sha256(record.encode())
    for array in arrays.values():
        digest.update(array.tobytes())
    members = {"meta": np.array(record, dtype=f"<U{len(record)}"), "sha256": np.array(digest.hexdigest()), **arrays}
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
    """Read and verify a checkpoint written by save_checkpoint. Raises FileNotFoundError when
    there is no file at `path`, and CheckpointError, with the reason, for anything else that
    cannot be trusted: whatever the bytes, no other exception, and no allocation beyond the
    arrays the file declares (which fit in the file)."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except NotADirectoryError:
        raise FileNotFoundError(f"no checkpoint at {path}: part of that path is a file, not a folder") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    if stat.S_ISDIR(status.st_mode):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{path} is not a regular file, so not a checkpoint")
    try:
        with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
            return _read(archive, status.st_size)
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
    for info in archive.infolist():  # every member as np.savez writes it
        name = _quoted(info.filename)
        if info.flag_bits & 0x1:
            raise CheckpointError(f"member {name} is marked encrypted; a checkpoint is never encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"member {name} uses zip compression method {info.compress_type}; "
                                  "a checkpoint is stored uncompressed (was it rewritten by another tool?)")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"member {name} declares {info.file_size} bytes, more than the file holds; "
                                  "it is truncated or damaged")
        if members.setdefault(info.filename, info) is not info:
            raise CheckpointError(f"member {name} appears twice; the file was modified")
    if "meta.npy" not in members:
        raise CheckpointError("not a checkpoint: it has no 'meta' record (it was not written by save_checkpoint)")
    text = str(_read_member(archive, members["meta.npy"], text_of_at_most=MAX_RECORD_CHARS))
    record = _parse_record(text, file_size)
    expected = {"meta.npy", "sha256.npy", *(f"{name}.npy" for name in record["arrays"])}
    if set(members) != expected:
        names = sorted(set(members) ^ expected)
        raise CheckpointError(f"its members do not match its record (unexpected or missing: "
                              f"{', '.join(map(_quoted, names[:3]))}); the file was modified")
    digest = hashlib.sha256(text.encode())
    arrays = {}
    for name, (dtype, shape) in record["arrays"].items():
        arrays[name] = _read_member(archive, members[f"{name}.npy"], np.dtype(dtype), tuple(shape))
        digest.update(arrays[name].tobytes())
    if str(_read_member(archive, members["sha256.npy"], text_of_at_most=64)) != digest.hexdigest():
        raise CheckpointError("its record and arrays do not match the checksum saved with them; "
                              "the file was modified or damaged")
    states = {prefix: {key.removeprefix(prefix): array for key, array in arrays.items() if key.startswith(prefix)}
              for prefix in ("model/", "optimizer/")}
    return Checkpoint(states["model/"], states["optimizer/"], record["meta"])


def _read_member(archive, info, dtype=None, shape=None, text_of_at_most=None):
    """One .npy member, after its header agrees byte for byte with the one numpy writes for what
    the record declares (`dtype` and `shape`, or a text of at most `text_of_at_most` characters)
    and with its size in the zip directory; then np.load reads it, never unpickling."""
    name = _quoted(info.filename)
    with archive.open(info) as member:
        start = member.read(10 + MAX_NPY_HEADER_BYTES)
    stream = io.BytesIO(start)
    if np.lib.format.read_magic(stream) != (1, 0):
        raise CheckpointError(f"member {name} is not a .npy array of the version numpy writes for it")
    found_shape, fortran_order, found = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER_BYTES)
    if text_of_at_most is not None:  # a str saved by np.savez: a 0-d little-endian unicode array
        dtype, shape = found, ()
        if found.kind != "U" or found.str[0] != "<" or not 0 < found.itemsize // 4 <= text_of_at_most:
            raise CheckpointError(f"member {name} is not text of at most {text_of_at_most} characters")
    canonical = io.BytesIO()  # what numpy writes for the record's dtype and shape, to the byte
    np.lib.format.write_array_header_1_0(canonical, {"descr": dtype.str, "fortran_order": False, "shape": shape})
    if start[: stream.tell()] != canonical.getvalue():
        raise CheckpointError(f"member {name} has a damaged .npy header (it declares {_quoted(found.str)} "
                              f"{_quoted(found_shape)}{', Fortran order' * fortran_order}); its record says {dtype.str} {shape}")
    expected_size = stream.tell() + dtype.itemsize * _product(shape)
    if info.file_size != expected_size:
        raise CheckpointError(f"member {name} holds {info.file_size} bytes; its record says {expected_size}")
    with archive.open(info) as member:
        array = np.load(member, allow_pickle=False)
        if member.read(1):  # reading to the end also makes zipfile check the CRC-32
            raise CheckpointError(f"member {name} holds bytes after its array")
    return array


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
        total_bytes += np.dtype(entry[0]).itemsize * _product(entry[1])
        if total_bytes > file_size:  # stored uncompressed: the arrays cannot be bigger than the file
            raise CheckpointError(f"its record declares more array bytes ({total_bytes}) than the file holds "
                                  f"({file_size}); the file was modified")
    return record


def _product(sizes):
    result = 1
    for size in sizes:
        result *= size  # Python ints: 10**12 elements do not overflow, they are refused by size
    return result
