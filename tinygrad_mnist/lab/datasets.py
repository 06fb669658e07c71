"""datasets: MNIST and Fashion-MNIST as numpy arrays, from IDX files (lab/idx.py) on disk or a
publisher's mirror: the table of datasets, the search for their files, the checksums, the download.

    from tinygrad_mnist.lab.datasets import load_dataset
    fashion = load_dataset("fashion-mnist")     # uint8 (60000, 28, 28), uint8 (60000,), ...
    fashion.classes[fashion.train_labels[0]]    # 'Ankle boot'

Adding a dataset of this shape is one entry in DATASETS: its files (sizes and SHA-256), its
mirrors, its class names and any system folder it installs into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .idx import IDXError, read_idx

# ----------------------------------------------------------------------------- the table of datasets


class IDXFile(NamedTuple):
    """One file of a dataset: its name (`.gz` not included), and the size and SHA-256 of its
    uncompressed bytes (mirrors recompress, so only the inner bytes are stable)."""

    name: str
    size: int
    sha256: str


class DatasetInfo(NamedTuple):
    """What the loader knows about one dataset, an entry of DATASETS. Besides `system_dirs`,
    the loader looks in the repository's `data/<name>/` (where MNIST ships)."""

    files: dict  # field of Dataset -> IDXFile
    mirrors: tuple  # base URLs that serve `<file name>.gz`, tried in order
    classes: tuple  # class names, indexed by label
    system_dirs: dict = {}  # folder an operating-system package installs the files into -> which package


DIGITS = tuple(str(digit) for digit in range(10))

DATASETS = {
    # Yann LeCun, Corinna Cortes, Christopher J.C. Burges; CC BY-SA 3.0
    "mnist": DatasetInfo(
        files={
            "train_images": IDXFile("train-images-idx3-ubyte", 47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            "train_labels": IDXFile("train-labels-idx1-ubyte", 60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            "test_images": IDXFile("t10k-images-idx3-ubyte", 7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            "test_labels": IDXFile("t10k-labels-idx1-ubyte", 10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        classes=DIGITS,
    ),
    # Han Xiao, Kashif Rasul, Roland Vollgraf (Zalando Research); MIT licence
    "fashion-mnist": DatasetInfo(
        files={
            "train_images": IDXFile("train-images-idx3-ubyte", 47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            "train_labels": IDXFile("train-labels-idx1-ubyte", 60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            "test_images": IDXFile("t10k-images-idx3-ubyte", 7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            "test_labels": IDXFile("t10k-labels-idx1-ubyte", 10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        },
        mirrors=(
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        system_dirs={Path("/usr/share/datasets/fashion-mnist"): "Debian's dataset-fashion-mnist package"},
    ),
}

DATA_ENVIRONMENT_VARIABLE = "TINYGRAD_MNIST_DATA"
# the repository's data/ folder: data/mnist/ ships MNIST, data/<name>/ caches other downloads
REPO_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"
# a stalled connection fails after this long instead of hanging the training script
DOWNLOAD_TIMEOUT_SECONDS = 30
# ...and a mirror that trickles bytes fast enough to dodge that timeout still stops here, per file
# (the largest file, 26 MB compressed, needs 45 KB/s to arrive in time)
DOWNLOAD_DEADLINE_SECONDS = 600
# a `.part` file nobody wrote to for this long belongs to a killed download (a live one writes at
# least once per DOWNLOAD_TIMEOUT_SECONDS and ends by the deadline), so the next load removes it
STALE_PART_SECONDS = 600


class ChecksumError(IDXError):
    """A file's uncompressed content does not have the expected SHA-256 (message: file, both hashes)."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are neither on disk nor downloadable; the message says where we looked,
    or in one line what is wrong with the folder we were given."""




@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """The four arrays of an MNIST-like dataset and its class names.

    Images uint8 (N, 28, 28) with pixels 0..255, labels uint8 (N,) indexing `classes`. It unpacks
    like a tuple of the four arrays: `train_images, train_labels, test_images, test_labels = dataset`.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple = DIGITS
    name: str = "mnist"

    def __iter__(self):
        return iter((self.train_images, self.train_labels, self.test_images, self.test_labels))

    def subset(self, train=None, test=None):
        """The first `train` training and the first `test` test examples (all of a set where None),
        as views: nothing is copied."""
        return dataclasses.replace(
            self,
            train_images=self.train_images[:train], train_labels=self.train_labels[:train],
            test_images=self.test_images[:test], test_labels=self.test_labels[:test],
        )


# ----------------------------------------------------------------------------- loading


def load_dataset(name, data_dir=None, download=True, mirrors=None, checksums=None) -> Dataset:
    """Load the four arrays of dataset `name` ("mnist" or "fashion-mnist", the keys of DATASETS).

    Each file (`train-images-idx3-ubyte`, raw or `.gz`) is looked for, in this order, in:
    `data_dir`, the folder named by the environment variable TINYGRAD_MNIST_DATA (each either in
    its subfolder `<name>/` or directly in it), the repository's `data/<name>/`, and the dataset's
    system folders (Debian's for Fashion-MNIST). A file that is, by its checksum, another dataset's
    file of the same name is passed over. Missing files are downloaded (if `download`) from
    `mirrors` (default: the dataset's, in order) into `<data_dir or TINYGRAD_MNIST_DATA>/<name>/`,
    else `data/<name>/`. Every file's uncompressed content must match its SHA-256 in `checksums`
    ({file name: hex digest}, default from DATASETS), or ChecksumError is raised.

    Returns a Dataset (images uint8 (N, 28, 28), labels uint8 (N,), `.classes`, `.name`).
    Raises DatasetNotFoundError if a file is missing and cannot be downloaded, or if a folder given
    is a file or cannot be written when a download needs it (one line saying so).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    info = DATASETS[name]
    mirrors = info.mirrors if mirrors is None else tuple(mirrors)
    if checksums is None:
        checksums = {file.name: file.sha256 for file in info.files.values()}
    places = _search_places(name, info, data_dir)
    cache_dir = places[0][0]  # where downloads go
    arrays = {}
    for field, file in info.files.items():
        _remove_stale_parts(cache_dir, file.name)
        array, passed_over = _find_and_read(name, file, places, checksums)
        if array is None and not download:
            raise DatasetNotFoundError(_not_found_message(name, info, file.name, places, passed_over, failures=None))
        if array is None:
            array = _download(name, info, file, places, passed_over, mirrors, checksums)
        arrays[field] = array
    return Dataset(**arrays, classes=info.classes, name=name)


def dataset_files(name, data_dir=None):
    """The files of dataset `name` that exist where load_dataset looks (raw or .gz): what a run
    reads, so that nothing it writes may land on one of them."""
    if name not in DATASETS:
        return []
    places = [folder for folder, _ in _search_places(name, DATASETS[name], data_dir)]
    return [path for folder in places for file in DATASETS[name].files.values()
            for path in (folder / file.name, folder / f"{file.name}.gz") if path.is_file()]


def load_mnist(data_dir=None, download=True, mirrors=None, checksums=None) -> Dataset:
    """load_dataset("mnist", ...): the four MNIST arrays, classes "0" to "9"."""
    return load_dataset("mnist", data_dir=data_dir, download=download, mirrors=mirrors, checksums=checksums)


def _search_places(name, info, data_dir):
    """The folders to look in, in order, each with why it is on the list. The first is the
    download folder."""
    places = []
    for root, reason in ((data_dir, "data_dir"), (os.environ.get(DATA_ENVIRONMENT_VARIABLE), DATA_ENVIRONMENT_VARIABLE)):
        if not root:
            continue
        root = Path(root)
        if root.is_file():
            shown = "data_dir=" if reason == "data_dir" else f"{DATA_ENVIRONMENT_VARIABLE}="
            raise DatasetNotFoundError(
                f"{shown}{root} is a file, not a folder: give the folder that holds the {name} files "
                f"(or a folder with a {name}/ subfolder)"
            )
        places += [(root / name, reason), (root, reason)]
    places.append((REPO_DATA_ROOT / name, f"the repository's data/{name}/"))
    places += list(info.system_dirs.items())
    return places


def _find_and_read(dataset, file, places, checksums):
    """(array, passed_over): the first verified copy of `file` (an IDXFile) in `places`, or None,
    and the copies that were passed over because they are another dataset's file of the same name.
    No copy is read past the size of the largest file of that name in DATASETS."""
    file_name, passed_over = file.name, []
    for folder, reason in places:
        for path in (folder / file_name, folder / (file_name + ".gz")):
            if not path.is_file():
                continue
            digest = hashlib.sha256()
            array = read_idx(path, digest, max_bytes=_largest_size(file))
            actual = digest.hexdigest()
            if actual == checksums[file_name]:
                return array, passed_over
            owner = _owner_of(file_name, actual, not_this=dataset)
            if owner is None:
                raise ChecksumError(_checksum_message(path, dataset, file_name, actual, checksums[file_name]))
            passed_over.append(f"{path} ({reason}) is {owner}'s {file_name}, not {dataset}'s")
    return None, passed_over


def _largest_size(file):
    """The size of the largest file named like `file` in DATASETS (the copy found may be another
    dataset's, which is passed over only after reading it)."""
    return max([file.size] + [other.size for info in DATASETS.values() for other in info.files.values()
                              if other.name == file.name])


def _owner_of(file_name, sha256, not_this):
    """The other dataset whose file `file_name` has this SHA-256, or None."""
    for other, info in DATASETS.items():
        if other != not_this and any(f.name == file_name and f.sha256 == sha256 for f in info.files.values()):
            return other
    return None


def _checksum_message(path, dataset, file_name, actual, expected):
    return (
        f"{path}: SHA-256 of the uncompressed content is {actual}, expected {expected} for {dataset}'s "
        f"{file_name}; the file is damaged or not the original: delete it so it is downloaded again"
    )


def _read_verified(path, dataset, file, checksums):
    """read_idx(path), never inflated past `file`'s size, after checking the uncompressed bytes
    against the SHA-256 for its name."""
    file_name, digest = file.name, hashlib.sha256()
    array = read_idx(path, digest, max_bytes=file.size)
    if digest.hexdigest() != checksums[file_name]:
        raise ChecksumError(_checksum_message(path, dataset, file_name, digest.hexdigest(), checksums[file_name]))
    return array


def _remove_stale_parts(folder, file_name):
    """Delete the `.part` files of `file_name` that killed downloads left in `folder`."""
    now = time.time()
    try:
        parts = list(folder.glob(f".{file_name}.*.part"))
    except OSError:
        return  # a folder we cannot list holds nothing we could remove
    for part in parts:
        try:
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass  # gone already (another run removed it), or a read-only folder: not our problem here


def _download(dataset, info, file, places, passed_over, mirrors, checksums):
    """Fetch `<file>.gz` from the first mirror that serves a verified copy into the download folder
    (the first place searched), and return its array. The file only appears there, by an atomic
    rename, once it has been verified."""
    cache_dir = places[0][0]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{file.name}.", suffix=".part")
    except OSError as error:
        raise DatasetNotFoundError(
            f"{dataset}'s {file.name} is not on disk and cannot be downloaded into {cache_dir}: "
            f"{error.strerror or error}; point {DATA_ENVIRONMENT_VARIABLE} (or data_dir) at a writable "
            f"folder, or at one that holds the files"
        ) from error
    temporary = Path(temporary_name)
    # a gzip file is never much larger than its content: a mirror sending more is not sending this file
    max_bytes = file.size + file.size // 100 + (1 << 16)
    failures = []
    try:
        with os.fdopen(handle, "wb") as temporary_file:
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + file.name + ".gz"
                try:
                    temporary_file.seek(0)
                    temporary_file.truncate()
                    _fetch(url, temporary_file, f"{dataset} {file.name}", max_bytes)
                    temporary_file.flush()
                    array = _read_verified(temporary, dataset, file, checksums)
                    os.replace(temporary, cache_dir / (file.name + ".gz"))
                    return array
                # URLError, HTTPError, timeouts and refused connections are OSErrors; a bad URL is a ValueError
                except (OSError, ValueError, http.client.HTTPException) as error:
                    failures.append((url, error))
    finally:
        temporary.unlink(missing_ok=True)

    message = _not_found_message(dataset, info, file.name, places, passed_over, failures)
    # a mirror that answered with the wrong bytes is a worse problem than a missing file: say so
    if any(isinstance(error, ChecksumError) for _, error in failures):
        raise ChecksumError(message)
    if any(isinstance(error, IDXError) for _, error in failures):
        raise IDXError(message)
    raise DatasetNotFoundError(message)


def _fetch(url, destination, label, max_bytes):
    """Copy `url` into the open file `destination`, in at most DOWNLOAD_DEADLINE_SECONDS, the
    response's headers included."""
    with _Deadline(DOWNLOAD_DEADLINE_SECONDS) as deadline:
        try:
            with deadline.opener().open(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                _copy_body(response, destination, label, max_bytes, deadline)
        except (OSError, http.client.HTTPException) as error:
            if deadline.expired.is_set() and not isinstance(error, TimeoutError):
                raise TimeoutError(f"no complete response within the deadline for one file, which is "
                                   f"{DOWNLOAD_DEADLINE_SECONDS} s (the mirror sends too slowly)") from None
            raise
        if deadline.expired.is_set():  # the body was cut off at the deadline
            raise TimeoutError(f"the body did not arrive within the deadline for one file, which is "
                               f"{DOWNLOAD_DEADLINE_SECONDS} s")


def _copy_body(response, destination, label, max_bytes, deadline):
    total = int(response.headers.get("Content-Length") or 0) or None
    received = 0
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {label}") as bar:
        # read1 returns what one read of the socket brought; read(n) would wait for all n bytes,
        # and a mirror trickling a byte now and then could keep that one call going forever
        while chunk := response.read1(1 << 16):
            received += len(chunk)
            if received > max_bytes:
                raise OSError(f"sent more than {max_bytes} bytes; that is not the file asked for")
            elapsed = time.monotonic() - deadline.started
            if elapsed > deadline.seconds:
                raise TimeoutError(
                    f"only {received} bytes arrived in {elapsed:.1f} s; the deadline for one file is "
                    f"{deadline.seconds} s"
                )
            destination.write(chunk)
            bar.update(len(chunk))


class _Deadline:
    """One download's deadline over everything it reads. The socket timeout bounds each read, but
    a mirror sending a byte of its headers every second never trips it, and http.client reads the
    headers inside urlopen, out of our loop's reach. So a watchdog thread shuts down, at the
    deadline, every connection the download opened (redirects included): a blocked read returns
    at once and the download fails."""

    def __init__(self, seconds):
        self.seconds, self.connections, self.expired = seconds, [], threading.Event()
        self._done = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self._watchdog.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._watchdog.join()

    def opener(self):
        """A urllib opener whose HTTP and HTTPS connections this deadline watches."""
        handlers = [_WatchedHTTPHandler(), _WatchedHTTPSHandler()]
        for handler in handlers:
            handler.deadline = self
        return urllib.request.build_opener(*handlers)

    def connection_class(self, http_class):
        def make(host, **options):
            connection = http_class(host, **options)
            self.connections.append(connection)
            return connection

        return make

    def _watch(self):
        if self._done.wait(self.seconds):
            return
        self.expired.set()
        while True:  # again every 50 ms: a connection may still be opening (its socket not yet there)
            for connection in list(self.connections):
                if connection.sock is not None:
                    try:
                        connection.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # closed already
            if self._done.wait(0.05):
                return


class _Watched:
    """A urllib handler whose connections are made through `self.deadline`."""

    def do_open(self, http_class, request, **options):
        return super().do_open(self.deadline.connection_class(http_class), request, **options)


class _WatchedHTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


def _not_found_message(dataset, info, file_name, places, passed_over, failures):
    lines = [f"{dataset} file {file_name} (raw or .gz) was not found. Looked in:"]
    lines += [f"  {folder}  ({reason})" for folder, reason in places]
    lines += [f"  passed over: {note}" for note in passed_over]
    if failures is None:
        lines.append("Downloading was switched off (download=False).")
    else:
        lines.append(f"Downloading {file_name}.gz into {places[0][0]} failed from every mirror:")
        lines += [f"  {url}: {error}" for url, error in failures] or ["  (no mirrors were given)"]
    names = ", ".join(file.name + ".gz" for file in info.files.values())
    lines.append(
        f"To provide the files: download the four {dataset} files ({names}) from a mirror such as "
        f"{info.mirrors[0]} into one folder, then set {DATA_ENVIRONMENT_VARIABLE} to that folder or "
        "pass data_dir=..."
        + "".join(f"; or install {package} (it puts them in {folder})" for folder, package in info.system_dirs.items())
    )
    return "\n".join(lines)
