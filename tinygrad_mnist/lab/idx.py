"""The IDX format: a tiny header followed by the raw array, as MNIST and Fashion-MNIST ship.

    bytes 0-1   two zero bytes
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions, n
    next 4n     the size of each dimension, a big-endian uint32
    the rest    the elements, row-major, big-endian; exactly as many as the sizes multiply to

So `train-images-idx3-ubyte` starts `00 00 08 03 | 0000ea60 0000001c 0000001c`: uint8, three
dimensions, 60000 x 28 x 28. Files are usually stored gzip-compressed (`.gz`).

A file is untrusted input: every way it can be malformed raises `IDXError` naming the file, and
the size the header declares is checked against what the file can hold (and against the size
expected, when the caller knows it) before any memory is allocated for it, so a corrupt header
or a gzip bomb cannot ask for gigabytes.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> element type as stored in the file (big-endian)
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# numpy 1.x arrays have at most 32 dimensions; MNIST needs 3, so more than this is a corrupt header
MAX_DIMENSIONS = 32
# deflate emits at least one bit per 258-byte match, so gzip cannot expand data more than 1032-fold:
# a header that declares more than that is corrupt, and we know it before decompressing anything
MAX_GZIP_EXPANSION = 1032
GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK_BYTES = 1 << 20  # data arrives in pieces this big, so memory follows real bytes only


class IDXError(ValueError):
    """A file is not a well-formed IDX file; the message names the file and what is wrong."""


def read_idx(path, digest=None, max_bytes=None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (told apart by content, not by name), feeding
    every (uncompressed) byte to `digest` (a hashlib object) if one is given.

    `max_bytes`, when given, is the most (uncompressed) bytes the file may hold, header included,
    such as the known size of a dataset's file: a raw file larger than that is refused from its
    size, before reading, and a gzip stream is never inflated past it, so a file that is not the
    one expected costs at most about the expected file's memory.

    Returns the array in native byte order with the dtype of the file's type code. Raises
    IDXError for any malformed file, and FileNotFoundError if there is no file at `path`.
    """
    path = Path(path)
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        if file_size == 0:
            raise IDXError(f"{path}: the file is empty; delete it and download it again")
        is_gzip = file.read(2) == GZIP_MAGIC
        file.seek(0)
        if not is_gzip:
            if max_bytes is not None and file_size > max_bytes:
                raise IDXError(f"{path}: {file_size} bytes, but the file expected here holds {max_bytes}; it is "
                               "not that file: delete it so it is downloaded again")
            return _read_idx_stream(file, path, digest, most_data_bytes=None, file_size=file_size, max_bytes=max_bytes)
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _read_idx_stream(
                    stream, path, digest, most_data_bytes=file_size * MAX_GZIP_EXPANSION, file_size=file_size,
                    max_bytes=max_bytes,
                )
        # gzip reports damage as BadGzipFile (an OSError), EOFError (cut short) or zlib.error
        except (OSError, EOFError, zlib.error) as error:
            raise IDXError(
                f"{path}: broken gzip stream ({error}); the file is damaged or incomplete, download it again"
            ) from error


def encode_idx(array) -> bytes:
    """The bytes of an IDX file holding `array` (gzip.compress() them for a `.gz` file).

    The dtype must be one IDX can store (uint8, int8, int16, int32, float32, float64), and every
    dimension at least 1, as read_idx requires.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"IDX cannot store dtype {array.dtype}; convert to one of "
            + ", ".join(str(dtype.newbyteorder("=")) for dtype in IDX_TYPES.values())
        )
    if not 1 <= array.ndim <= MAX_DIMENSIONS or not all(0 < size < 2**32 for size in array.shape):
        raise ValueError(
            f"IDX needs 1 to {MAX_DIMENSIONS} dimensions, each of size 1 to 2**32-1; got shape {array.shape}"
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_TYPES[code], copy=False).tobytes()


def _read_idx_stream(stream, path, digest, most_data_bytes, file_size, max_bytes=None):
    """Parse one IDX file from `stream`. most_data_bytes bounds the data a gzip stream can hold;
    for a raw file (None) the bound is exact: the file size minus the header. max_bytes (header
    included), when given, bounds both."""
    header = _read_up_to(stream, 4)
    if len(header) == 0:
        raise IDXError(f"{path}: the (decompressed) content is empty; delete the file and download it again")
    if len(header) < 4:
        raise IDXError(
            f"{path}: truncated: {len(header)} bytes, shorter than the 4-byte IDX header; is it an IDX file?"
        )
    if header[:2] != b"\x00\x00":
        raise IDXError(
            f"{path}: not an IDX file: it starts {header.hex(' ')}, not with two zero bytes and a type code"
        )
    if header[2] not in IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_TYPES)
        raise IDXError(f"{path}: unsupported IDX type code 0x{header[2]:02x}; IDX knows {known}")
    dtype, dimension_count = IDX_TYPES[header[2]], header[3]
    if not 1 <= dimension_count <= MAX_DIMENSIONS:
        raise IDXError(
            f"{path}: the header declares {dimension_count} dimensions; IDX files here have 1 to "
            f"{MAX_DIMENSIONS} (MNIST: 1 or 3), so the header is corrupt"
        )
    size_bytes = _read_up_to(stream, 4 * dimension_count)
    if len(size_bytes) < 4 * dimension_count:
        raise IDXError(f"{path}: truncated inside the header: {dimension_count} dimension sizes were declared")
    shape = struct.unpack(f">{dimension_count}I", size_bytes)
    if 0 in shape:
        raise IDXError(f"{path}: the header declares shape {shape}, with an empty dimension; the header is corrupt")

    # Python integers do not overflow, so an absurd shape gives an absurd (not a wrapped) size
    declared_bytes = math.prod(shape) * dtype.itemsize
    header_bytes = 4 + 4 * dimension_count
    if max_bytes is not None and header_bytes + declared_bytes > max_bytes:
        raise IDXError(
            f"{path}: the header declares shape {shape} of {dtype.name}, {header_bytes + declared_bytes} bytes, but "
            f"the file expected here holds {max_bytes}; it is not that file: delete it so it is downloaded again"
        )
    if most_data_bytes is None:
        most_data_bytes = file_size - header_bytes
        if declared_bytes > most_data_bytes:
            raise IDXError(
                f"{path}: truncated: the header declares shape {shape} of {dtype.name}, {declared_bytes} "
                f"bytes of data, but only {most_data_bytes} follow; download the file again"
            )
    elif declared_bytes > most_data_bytes:
        raise IDXError(
            f"{path}: the header declares shape {shape} of {dtype.name}, {declared_bytes} bytes, but a "
            f"{file_size}-byte gzip file cannot hold more than {most_data_bytes}; the header is corrupt"
        )

    # one byte more than declared, to notice trailing bytes without reading all of them
    data = _read_up_to(stream, declared_bytes + 1)
    if len(data) < declared_bytes:
        raise IDXError(
            f"{path}: truncated: the header declares {declared_bytes} bytes of data (shape {shape}) but "
            f"only {len(data)} follow; download the file again"
        )
    if len(data) > declared_bytes:
        raise IDXError(
            f"{path}: trailing bytes after the {declared_bytes} bytes of data the header declares "
            f"(shape {shape}); the file is not a single IDX array"
        )
    if digest is not None:
        digest.update(header + size_bytes)
        digest.update(data)
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    # IDX is big-endian; hand back native order so later arithmetic does not pay for byte swaps
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_up_to(stream, count):
    """Read `count` bytes, or fewer at the end of the stream, a chunk at a time: a header that
    lies about the size costs only the bytes that really arrive."""
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(min(count - len(data), READ_CHUNK_BYTES))
        if not chunk:
            break
        data += chunk
    return data
