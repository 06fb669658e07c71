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
does not declare: the record is read first (bounded in size), then each member's size in the zip
directory and its .npy header are checked against the record, and only then are its bytes read.
Because members are stored uncompressed, the arrays a file declares can never add up to more than
the file's own size. Nothing is ever unpickled. Whatever the bytes, the reader raises only
CheckpointError (or FileNotFoundError).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMAT = "tinygrad_mnist.lab.checkpoint/2"
OLDER_FORMATS = ("tinygrad_mnist.lab.checkpoint/1",)  # its record was not under the checksum
MAX_RECORD_CHARS = 1 << 20  # the record is settings and an RNG state: a few KB; 1 M chars is generous
MAX_NPY_HEADER_BYTES = 4096  # numpy writes 64 to 128 bytes for the arrays a checkpoint holds
# the dtypes a state_dict holds: booleans, integers and floats, no objects, strings or structures
ARRAY_DTYPE = re.compile(r"[<>|](b1|[iu][1248]|f[248])")


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
    digest = hashlib.sha256(record.encode())
    for array in arrays.values():
        digest.update(array.tobytes())
    _write_atomically(path, {"meta": np.array(record, dtype=f"<U{len(record)}"),
                             "sha256": np.array(digest.hexdigest(), dtype="<U64"), **arrays})
    return path


def _write_atomically(path, arrays):
    """np.savez to a temporary file beside `path`, then os.replace. Any failure is one line, and
    removes the temporary file; so do Ctrl-C and kills that Python sees. Files a killed run left
    behind (`.NAME.xxxxxxxx.tmp`) are removed first."""
    _check_not_a_folder(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot save {path}: {_folder_problem(path.parent, error)}") from None
    _remove_stale_temporaries(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
    except OSError as error:
        raise CheckpointError(f"cannot save {path}: {_os_problem(error)}; the previous checkpoint is unchanged") from None
    finally:
        if temporary is not None and os.path.lexists(temporary):  # also on Ctrl-C, which is re-raised
            os.unlink(temporary)


def _remove_stale_temporaries(path):
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's names
    try:
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    except OSError:
        pass  # a leftover we cannot remove does no harm; the write itself reports real problems


def _check_not_a_folder(path):
    if path.is_dir():
        raise CheckpointError(f"cannot save to {path}: it is a folder; give a file path such as {path / 'run.npz'}")


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
    _check_not_a_folder(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot save to {path}: {_folder_problem(path.parent, error)}") from None
    if path.exists() and not overwrite and not (resuming is not None and _same_file(path, Path(resuming))):
        raise CheckpointError(f"{path} already exists and is not the checkpoint being resumed; "
                              "choose another path, or pass --overwrite to replace it")
    try:  # the only sure test of a folder being writable (permissions, read-only mounts, root) is to write
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise CheckpointError(f"cannot save to {path}: {_os_problem(error)}") from None
    return path


def _same_file(first, second):
    try:
        return os.path.samefile(first, second)
    except OSError:
        return first.resolve() == second.resolve()


# ----------------------------------------------------------------------------------------- reading


class _Refused(Exception):
    """Internal: one reason a file is refused; load_checkpoint adds the path."""


def _quoted(value):
    """A name or value from the file, quoted and cut short, so an error message stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        with open(path, "rb") as file:
            return _read(file, status.st_size)
    except _Refused as reason:
        raise CheckpointError(f"{path}: {reason}") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None


def _read(file, file_size):
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise _Refused(f"not a readable checkpoint (not a .npz file, or truncated): {error}") from None
    with archive:
        members = _check_directory(archive, file_size)
        if "meta.npy" not in members:
            raise _Refused("not a checkpoint: it has no 'meta' record (it was not written by save_checkpoint)")
        text = _read_text(archive, members["meta.npy"], MAX_RECORD_CHARS)
        record = _parse_record(text, file_size)
        expected = {"meta.npy", "sha256.npy", *(f"{name}.npy" for name in record["arrays"])}
        if set(members) != expected:
            names = sorted(set(members) ^ expected)
            raise _Refused(f"its members do not match its record (unexpected or missing: "
                           f"{', '.join(map(_quoted, names[:3]))}); the file was modified")
        stored_digest = _read_text(archive, members["sha256.npy"], max_chars=64)
        digest = hashlib.sha256(text.encode())
        arrays = {}
        for name, (dtype, shape) in record["arrays"].items():
            arrays[name] = _read_array(archive, members[f"{name}.npy"], np.dtype(dtype), shape)
            digest.update(arrays[name].tobytes())
    if stored_digest != digest.hexdigest():
        raise _Refused("its record and arrays do not match the checksum saved with them; the file was modified or damaged")
    model_state = {key.removeprefix("model/"): array for key, array in arrays.items() if key.startswith("model/")}
    optimizer_state = {key.removeprefix("optimizer/"): array for key, array in arrays.items() if key.startswith("optimizer/")}
    return Checkpoint(model_state, optimizer_state, record["meta"])


def _check_directory(archive, file_size):
    """Every member as np.savez writes it: stored, not encrypted, unique names, inside the file."""
    members = {}
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            raise _Refused(f"member {_quoted(info.filename)} is marked encrypted; a checkpoint is never encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Refused(f"member {_quoted(info.filename)} uses zip compression method {info.compress_type}; "
                           "a checkpoint is stored uncompressed (was it rewritten by another tool?)")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > file_size:
            raise _Refused(f"member {_quoted(info.filename)} declares {info.file_size} bytes, "
                           "more than the file holds; it is truncated or damaged")
        if info.filename in members:
            raise _Refused(f"member {_quoted(info.filename)} appears twice; the file was modified")
        members[info.filename] = info
    return members


# a .npy header as numpy writes it: a dict's repr in sorted key order, padded with spaces and "\n"
NPY_HEADER = re.compile(r"\{'descr': '([<>|][a-zA-Z]\d{1,7})', 'fortran_order': False, "
                        r"'shape': \(((?:\d{1,19}, )*\d{0,19},?)\), \}[ ]*\n?")


def _read_member(archive, info, check_header):
    """The data bytes of one member. Its .npy header is read and checked first, by
    check_header(descr, shape) -> the number of data bytes the record allows; only then, if the
    zip directory agrees, are that many bytes read."""
    try:
        with archive.open(info) as member:
            magic = member.read(8)
            if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6:] not in (b"\x01\x00", b"\x02\x00"):
                raise _Refused(f"member {_quoted(info.filename)} is not a .npy array")
            length_bytes = 2 if magic[6] == 1 else 4
            length = int.from_bytes(member.read(length_bytes), "little")
            if length > MAX_NPY_HEADER_BYTES:
                raise _Refused(f"member {_quoted(info.filename)} has a .npy header of {length} bytes; numpy writes about 100")
            match = NPY_HEADER.fullmatch(member.read(length).decode("latin1"))
            if match is None:
                raise _Refused(f"member {_quoted(info.filename)} has a damaged .npy header")
            shape = tuple(int(size) for size in match[2].replace(",", " ").split())
            nbytes = check_header(match[1], shape)
            expected_size = 8 + length_bytes + length + nbytes
            if info.file_size != expected_size:
                raise _Refused(f"member {_quoted(info.filename)} holds {info.file_size} bytes; its record says {expected_size}")
            data = member.read(nbytes)
            if len(data) != nbytes or member.read(1):  # reading to the end makes zipfile check the CRC-32
                raise _Refused(f"member {_quoted(info.filename)} is truncated")
            return data
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError, OSError) as error:
        raise _Refused(f"member {_quoted(info.filename)} cannot be read (truncated or damaged: {error})") from None


def _read_text(archive, info, max_chars):
    """A 0-d little-endian unicode array, as np.savez writes a str: its text."""

    def check_header(descr, shape):
        chars = int(descr[2:]) if descr.startswith("<U") else -1
        if shape != () or not 0 < chars <= max_chars:
            raise _Refused(f"member {_quoted(info.filename)} is not text of at most {max_chars} characters")
        return 4 * chars

    try:
        return _read_member(archive, info, check_header).decode("utf-32-le")
    except UnicodeDecodeError:
        raise _Refused(f"member {_quoted(info.filename)} is not valid text") from None


def _read_array(archive, info, dtype, shape):
    """One array, after its header was checked against the record's dtype and shape."""

    def check_header(descr, found_shape):
        if descr != dtype.str or found_shape != tuple(shape):
            raise _Refused(f"member {_quoted(info.filename)} holds {descr} {found_shape}; "
                           f"its record says {dtype.str} {tuple(shape)}")
        return dtype.itemsize * _product(shape)

    data = _read_member(archive, info, check_header)
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # a writable array of its own


def _parse_record(text, file_size):
    """The record as a dict, its types checked before anything in it is used."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise _Refused(f"its 'meta' record is not valid JSON ({str(error)[:80]})") from None
    found = record.get("format") if isinstance(record, dict) else None
    if found in OLDER_FORMATS:
        raise _Refused(f"made by an older version of tinygrad_mnist (format {found!r}), whose record was not under "
                       "the checksum; this version reads only checkpoints it can verify: train again to make a new one")
    if found != FORMAT:
        raise _Refused(f"has format {_quoted(found)}; this version reads {FORMAT!r}")
    if set(record) != {"format", "arrays", "meta"} or not all(isinstance(record[key], dict) for key in ("arrays", "meta")):
        raise _Refused("its record lacks its 'arrays' or 'meta' table; the file was modified")
    total_bytes = 0
    for name, entry in record["arrays"].items():
        if not (name.startswith(("model/", "optimizer/")) and isinstance(entry, list) and len(entry) == 2
                and isinstance(entry[0], str) and ARRAY_DTYPE.fullmatch(entry[0]) and isinstance(entry[1], list)
                and len(entry[1]) <= 32 and all(type(size) is int and size >= 0 for size in entry[1])):
            raise _Refused(f"its record describes array {_quoted(name)} as {_quoted(entry)}, not [dtype, shape]; "
                           "the file was modified")
        total_bytes += int(np.dtype(entry[0]).itemsize) * _product(entry[1])
        if total_bytes > file_size:  # stored uncompressed: the arrays cannot be bigger than the file
            raise _Refused(f"its record declares more array bytes ({total_bytes}) than the file holds ({file_size}); "
                           "the file was modified")
    return record


def _product(sizes):
    result = 1
    for size in sizes:
        result *= size  # Python ints: 10**12 elements do not overflow, they are refused by size
    return result

