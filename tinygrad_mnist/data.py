"""data: MNIST as numpy arrays, read from IDX files on disk or downloaded from a public mirror.

MNIST ships in the IDX format, a tiny header followed by the raw array:

    bytes 0-1   two zero bytes
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions, n
    next 4n     the size of each dimension, a big-endian uint32
    the rest    the elements, row-major, big-endian; exactly as many as the sizes multiply to

So `train-images-idx3-ubyte` starts `00 00 08 03 | 0000ea60 0000001c 0000001c`: uint8, three
dimensions, 60000 x 28 x 28. Files are usually stored gzip-compressed (`.gz`).

    from tinygrad_mnist.data import load_mnist, normalize, one_hot, batches
    mnist = load_mnist()                        # uint8 (60000, 28, 28), uint8 (60000,), ...
    for images, labels in batches(mnist.train_images, mnist.train_labels, 64, rng=0):
        inputs = normalize(images, flatten=True)  # float32 (64, 784) in [0, 1]

A file is untrusted input: every way it can be malformed raises `IDXError` naming the file, and
the size the header declares is checked against what the file can hold before any memory is
allocated for it, so a corrupt header or a gzip bomb cannot ask for gigabytes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import numbers
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

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

# the four files, by the field of `MNIST` they fill
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the *uncompressed* files: mirrors recompress, so only the inner bytes are stable.
# Sizes: 47040016, 60008, 7840016 and 10008 bytes.
CHECKSUMS = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# public copies of the original files, each serving `<name>.gz`; tried in this order
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
DATA_ENVIRONMENT_VARIABLE = "TINYGRAD_MNIST_DATA"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
# a stalled connection fails after this long instead of hanging the training script
DOWNLOAD_TIMEOUT_SECONDS = 30
# the largest MNIST file is 9.9 MB compressed (47 MB raw): a mirror sending more is not sending MNIST
MAX_DOWNLOAD_BYTES = 128 << 20


class IDXError(ValueError):
    """A file is not a well-formed IDX file; the message names the file and what is wrong."""


class ChecksumError(IDXError):
    """A file's uncompressed content does not have the expected SHA-256 (message: file, both hashes)."""


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are neither on disk nor downloadable; the message says where we looked."""


class MNIST(NamedTuple):
    """The four MNIST arrays: images uint8 (N, 28, 28) with pixels 0..255, labels uint8 (N,) 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def subset(self, train=None, test=None):
        """The first `train` training and the first `test` test examples (all of a set where None),
        as views: nothing is copied."""
        return MNIST(self.train_images[:train], self.train_labels[:train], self.test_images[:test], self.test_labels[:test])


# ----------------------------------------------------------------------------- IDX files


def read_idx(path) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (told apart by content, not by name).

    Returns the array in native byte order with the dtype of the file's type code. Raises
    IDXError for any malformed file, and FileNotFoundError if there is no file at `path`.
    """
    return _read_idx(Path(path))


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


def _read_idx(path, digest=None):
    """read_idx, also feeding every (uncompressed) byte of the file to `digest` if one is given."""
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        if file_size == 0:
            raise IDXError(f"{path}: the file is empty; delete it and download it again")
        is_gzip = file.read(2) == GZIP_MAGIC
        file.seek(0)
        if not is_gzip:
            return _read_idx_stream(file, path, digest, most_data_bytes=None, file_size=file_size)
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _read_idx_stream(
                    stream, path, digest, most_data_bytes=file_size * MAX_GZIP_EXPANSION, file_size=file_size
                )
        # gzip reports damage as BadGzipFile (an OSError), EOFError (cut short) or zlib.error
        except (OSError, EOFError, zlib.error) as error:
            raise IDXError(
                f"{path}: broken gzip stream ({error}); the file is damaged or incomplete, download it again"
            ) from error


def _read_idx_stream(stream, path, digest, most_data_bytes, file_size):
    """Parse one IDX file from `stream`. most_data_bytes bounds the data a gzip stream can hold;
    for a raw file (None) the bound is exact: the file size minus the header."""
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


# ----------------------------------------------------------------------------- MNIST


def load_mnist(data_dir=None, download=True, mirrors=None, checksums=None) -> MNIST:
    """Load the four MNIST arrays, downloading the files once if they are not on disk.

    Each file (`train-images-idx3-ubyte`, raw or `.gz`) is looked for in `data_dir`, then in the
    folder named by the environment variable TINYGRAD_MNIST_DATA, then in the repo's data/mnist/.
    Missing files are downloaded (if `download`) from `mirrors` (default MIRRORS, in order) into the
    first of those folders that is set. Every file's uncompressed content must match its SHA-256
    in `checksums` (default CHECKSUMS), or ChecksumError is raised.

    Returns MNIST(train_images, train_labels, test_images, test_labels); images are uint8
    (N, 28, 28), labels uint8 (N,). Raises MNISTNotFoundError if a file is missing and cannot be
    downloaded.
    """
    mirrors = MIRRORS if mirrors is None else list(mirrors)
    checksums = CHECKSUMS if checksums is None else checksums
    places = _search_places(data_dir)
    arrays = {}
    for field, name in MNIST_FILES.items():
        path = _find(name, places)
        if path is not None:
            arrays[field] = _read_verified(path, name, checksums)
        elif download:
            arrays[field] = _download(name, places, mirrors, checksums)
        else:
            raise MNISTNotFoundError(_not_found_message(name, places, failures=None))
    return MNIST(**arrays)


def _search_places(data_dir):
    """The folders to look in, in order, each with why it is on the list."""
    places = []
    if data_dir is not None:
        places.append((Path(data_dir), "data_dir"))
    if os.environ.get(DATA_ENVIRONMENT_VARIABLE):
        places.append((Path(os.environ[DATA_ENVIRONMENT_VARIABLE]), DATA_ENVIRONMENT_VARIABLE))
    places.append((REPO_DATA_DIR, "the repo's data/mnist/"))
    return places


def _find(name, places):
    for folder, _ in places:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _read_verified(path, name, checksums):
    """read_idx(path), after checking the uncompressed bytes against the SHA-256 for `name`."""
    digest = hashlib.sha256()
    array = _read_idx(path, digest)
    expected, actual = checksums[name], digest.hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{path}: SHA-256 of the uncompressed content is {actual}, expected {expected} for {name}; "
            "the file is damaged or not the original MNIST file: delete it so it is downloaded again"
        )
    return array


def _download(name, places, mirrors, checksums):
    """Fetch `<name>.gz` from the first mirror that serves a verified copy into the cache folder
    (the first place searched), and return its array. A file only appears in the cache, by an
    atomic rename, once it has been verified."""
    cache_dir = places[0][0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        handle, temporary_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=".part")
        temporary = Path(temporary_name)
        try:
            with os.fdopen(handle, "wb") as temporary_file:
                _fetch(url, temporary_file, name)
            array = _read_verified(temporary, name, checksums)
            os.replace(temporary, cache_dir / (name + ".gz"))
            return array
        # URLError, HTTPError, timeouts and refused connections are OSErrors; a bad URL is a ValueError
        except (OSError, ValueError, http.client.HTTPException) as error:
            failures.append((url, error))
        finally:
            temporary.unlink(missing_ok=True)

    message = _not_found_message(name, places, failures)
    # a mirror that answered with the wrong bytes is a worse problem than a missing file: say so
    if any(isinstance(error, ChecksumError) for _, error in failures):
        raise ChecksumError(message)
    if any(isinstance(error, IDXError) for _, error in failures):
        raise IDXError(message)
    raise MNISTNotFoundError(message)


def _fetch(url, destination, name):
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {name}") as bar:
            while chunk := response.read(1 << 16):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise OSError(f"{url} sent more than {MAX_DOWNLOAD_BYTES} bytes; that is not an MNIST file")
                destination.write(chunk)
                bar.update(len(chunk))


def _not_found_message(name, places, failures):
    lines = [f"MNIST file {name} (raw or .gz) was not found. Looked in:"]
    lines += [f"  {folder}  ({reason})" for folder, reason in places]
    if failures is None:
        lines.append("Downloading was switched off (download=False).")
    else:
        lines.append(f"Downloading {name}.gz into {places[0][0]} failed from every mirror:")
        lines += [f"  {url}: {error}" for url, error in failures] or ["  (no mirrors were given)"]
    lines.append(
        "To provide the files: download the four MNIST files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from a "
        f"mirror such as {MIRRORS[0]} into one folder, then set {DATA_ENVIRONMENT_VARIABLE} to that "
        "folder or pass load_mnist(data_dir=...)."
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- batches


def normalize(images, flatten=False) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1], same shape; flatten=True gives (N, 28*28).

    Call it per batch: the whole training set as float32 takes four times the memory of uint8.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"normalize expects uint8 pixels 0..255, got {images.dtype}; if the images are already "
            "scaled to [0, 1], do not normalize them twice"
        )
    if flatten:
        if images.ndim < 2:
            raise ValueError(f"normalize(flatten=True) needs a batch of images (N, ...), got shape {images.shape}")
        images = images.reshape(len(images), -1)  # (N, 28, 28) -> (N, 784)
    return np.divide(images, 255, dtype=np.float32)


def one_hot(labels, num_classes=10) -> np.ndarray:
    """Class labels (N,) -> float32 (N, num_classes) with a single 1 per row, at the label."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot expects a 1-D array of integer labels, got {labels.dtype} of shape {labels.shape}")
    if num_classes < 1:
        raise ValueError(f"one_hot needs num_classes >= 1, got {num_classes}")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        first = outside[0]
        raise ValueError(
            f"one_hot: label {labels[first]} at index {first} is outside 0..{num_classes - 1} "
            f"({outside.size} labels are); pass num_classes= large enough, or fix the labels"
        )
    return np.eye(num_classes, dtype=np.float32)[labels]


def batches(images, labels, batch_size, shuffle=True, rng=None):
    """Iterate over (images_batch, labels_batch) pairs that cover every sample exactly once.

    The last batch holds the remainder when batch_size does not divide N. With shuffle=True the
    order comes from `rng`: a seed (the same seed gives the same order) or an np.random.Generator
    (reuse one across epochs to get a new order each epoch); None means unseeded. Batches are
    copies in the input dtype: convert them (normalize) per batch.
    """
    if len(images) != len(labels):
        raise ValueError(f"batches got {len(images)} images but {len(labels)} labels; they must pair up")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if shuffle:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = generator.permutation(len(images))
    else:
        order = np.arange(len(images))
    # the checks above run at the call; only the slicing is lazy
    return ((images[indices], labels[indices]) for indices in _split(order, batch_size))


def _split(order, batch_size):
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
