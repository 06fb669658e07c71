"""Tests for datasets.py: IDX reading, loading MNIST and Fashion-MNIST, and downloading.

Downloads are tested against a local HTTP server on 127.0.0.1 serving small fake MNIST files with
matching checksums; nothing here touches the network. The real files are used only through the
`mnist_dir` and `fashion_mnist` fixtures (see conftest.py).
"""

import errno
import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist.lab import datasets
from tinygrad_mnist.lab.datasets import DATASETS, ChecksumError, Dataset, DatasetNotFoundError, load_dataset, load_mnist
from tinygrad_mnist.lab.idx import IDXError, encode_idx, read_idx

ALL_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def write(path, content, compress=False):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def idx_header(type_code, *shape):
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_read_idx_round_trips_every_type_code(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    original = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write(tmp_path / "array.idx", encode_idx(original), compress)

    loaded = read_idx(path)

    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    assert loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, original)


def test_read_idx_reads_big_endian_bytes_written_by_hand(tmp_path):
    # int16 [1, -2, 258] and float32 [1.5] spelled out byte by byte, independent of encode_idx
    int16_file = write(tmp_path / "int16", idx_header(0x0B, 3) + bytes.fromhex("0001 fffe 0102"))
    float32_file = write(tmp_path / "float32", idx_header(0x0D, 1, 1) + bytes.fromhex("3fc00000"))

    np.testing.assert_array_equal(read_idx(int16_file), [1, -2, 258])
    assert read_idx(float32_file).tolist() == [[1.5]]


def test_read_idx_detects_gzip_by_content_not_by_name(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gzip_without_suffix = write(tmp_path / "labels-idx", encode_idx(array), compress=True)
    raw_with_gz_suffix = write(tmp_path / "labels-idx.gz", encode_idx(array))

    np.testing.assert_array_equal(read_idx(gzip_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), array)


VALID = idx_header(0x08, 2, 3) + bytes(range(6))
MALFORMED = {
    "empty": (b"", "empty"),
    "shorter than the header": (b"\x00\x00", "truncated"),
    "wrong magic": (b"PK\x03\x04" + bytes(20), "two zero bytes"),
    "unsupported type code": (idx_header(0x0A, 2) + bytes(2), "type code 0x0a"),
    "zero dimensions": (bytes([0, 0, 8, 0]), "0 dimensions"),
    "absurd number of dimensions": (bytes([0, 0, 8, 200]) + bytes(800), "200 dimensions"),
    "a dimension of size zero": (idx_header(0x08, 3, 0), "empty dimension"),
    "truncated dimension sizes": (idx_header(0x08, 2, 3)[:9], "truncated inside the header"),
    "truncated data": (VALID[:-1], "truncated"),
    "trailing bytes": (VALID + b"\x00", "trailing bytes"),
    "huge declared size": (idx_header(0x08, 4_000_000_000, 4_000_000_000) + bytes(10), "declares"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_read_idx_rejects_malformed_file_naming_it(tmp_path, case, compress):
    content, expected_words = MALFORMED[case]
    path = write(tmp_path / "broken-file-idx", content, compress)

    with pytest.raises(IDXError) as raised:
        read_idx(path)

    assert str(path) in str(raised.value)
    assert expected_words in str(raised.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda compressed: compressed[:-5],  # cut inside the CRC/size trailer
        lambda compressed: compressed[: len(compressed) // 2],  # cut inside the deflate stream
        lambda compressed: compressed[:10] + bytes(len(compressed) - 10),  # deflate data zeroed
        lambda compressed: compressed[:-8] + b"\xff\xff\xff\xff" + compressed[-4:],  # wrong CRC
        lambda compressed: compressed + b"junk after the gzip member",
        lambda compressed: compressed[:2] + b"\x07" + compressed[3:],  # unknown compression method
    ],
    ids=["cut trailer", "cut stream", "zeroed data", "wrong crc", "trailing junk", "bad method"],
)
def test_read_idx_reports_a_broken_gzip_stream_as_idx_error(tmp_path, damage):
    compressed = gzip.compress(encode_idx(np.arange(200, dtype=np.int32)))
    path = tmp_path / "damaged.gz"
    path.write_bytes(damage(compressed))

    with pytest.raises(IDXError, match="damaged.gz"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_a_header_asking_for_gigabytes_quickly_and_without_allocating(tmp_path, compress):
    # 4e9 x 4e9 float64: 128 exabytes declared, 100 bytes present
    content = idx_header(0x0E, 4_000_000_000, 4_000_000_000) + bytes(100)
    path = write(tmp_path / "huge-idx", content, compress)

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(IDXError, match="huge-idx"):
            read_idx(path)
        elapsed = time.perf_counter() - started
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak_bytes < 1 << 20


def test_read_idx_stops_decompressing_a_gzip_bomb_just_past_the_declared_size(tmp_path):
    # the header declares 10 bytes; the stream expands to 32 MiB of zeros
    bomb = gzip.compress(idx_header(0x08, 10) + bytes(32 << 20), compresslevel=1)
    path = tmp_path / "bomb.gz"
    path.write_bytes(bomb)

    tracemalloc.start()
    try:
        with pytest.raises(IDXError, match="trailing bytes"):
            read_idx(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1 << 20


def test_read_idx_raises_file_not_found_for_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing-here")


def test_encode_idx_refuses_dtypes_idx_cannot_store():
    with pytest.raises(TypeError, match="uint16"):
        encode_idx(np.zeros(3, dtype=np.uint16))


# ----------------------------------------------------------------------------- the real files

ARRAY_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")
MNIST_FILE_NAMES = {field: file.name for field, file in DATASETS["mnist"].files.items()}


@pytest.fixture(scope="module")
def real_mnist(mnist_dir):
    return load_mnist(data_dir=mnist_dir, download=False)


@pytest.mark.mnist
def test_load_mnist_gives_uint8_arrays_of_the_documented_shapes(real_mnist):
    assert isinstance(real_mnist, Dataset) and real_mnist.name == "mnist"
    assert real_mnist.train_images.shape == (60000, 28, 28)
    assert real_mnist.train_labels.shape == (60000,)
    assert real_mnist.test_images.shape == (10000, 28, 28)
    assert real_mnist.test_labels.shape == (10000,)
    assert all(array.dtype == np.uint8 for array in real_mnist)


@pytest.mark.mnist
def test_load_mnist_has_the_known_first_labels_and_class_counts(real_mnist):
    assert real_mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert real_mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(real_mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(real_mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert real_mnist.classes == ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


@pytest.mark.mnist
def test_load_mnist_images_use_the_full_pixel_range(real_mnist):
    assert real_mnist.train_images.min() == 0 and real_mnist.train_images.max() == 255
    # a digit is mostly background: about a fifth of the pixels are ink
    assert 0.15 < (real_mnist.test_images > 0).mean() < 0.25


def test_the_repository_ships_the_four_mnist_files_and_they_verify():
    # the autouse fixture below hides the repository's data/ folder from every test in this module,
    # so hand it over as data_dir: its mnist/ subfolder must hold the four files, verified
    shipped = Path(__file__).resolve().parent.parent / "data" / "mnist"
    for file in DATASETS["mnist"].files.values():
        assert (shipped / (file.name + ".gz")).is_file(), f"{file.name}.gz is missing from data/mnist/"
    loaded = load_dataset("mnist", data_dir=shipped.parent, download=False)
    assert loaded.train_labels[:3].tolist() == [5, 0, 4]


@pytest.mark.fashion_mnist
def test_load_dataset_gives_fashion_mnist_with_its_class_names(fashion_mnist):
    assert fashion_mnist.name == "fashion-mnist"
    assert fashion_mnist.train_images.shape == (60000, 28, 28) and fashion_mnist.test_images.shape == (10000, 28, 28)
    assert all(array.dtype == np.uint8 for array in fashion_mnist)
    assert fashion_mnist.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert fashion_mnist.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion_mnist.test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion_mnist.train_labels).tolist() == [6000] * 10
    assert np.bincount(fashion_mnist.test_labels).tolist() == [1000] * 10
    assert fashion_mnist.classes[fashion_mnist.train_labels[0]] == "Ankle boot"


@pytest.mark.fashion_mnist
def test_fashion_mnist_is_not_mnist_under_the_same_file_names(fashion_mnist, real_mnist):
    # the file names are the same, so only the checksums keep one from standing in for the other
    assert not np.array_equal(fashion_mnist.test_images[:100], real_mnist.test_images[:100])


def test_load_dataset_refuses_an_unknown_name_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; choose one of fashion-mnist, mnist"):
        load_dataset("cifar10")


def test_every_dataset_entry_is_complete():
    for name, info in DATASETS.items():
        assert tuple(info.files) == ARRAY_FIELDS, name
        assert len(info.classes) == 10 and len(set(info.classes)) == 10, name
        assert info.mirrors and all(mirror.endswith("/") for mirror in info.mirrors), name
        for file in info.files.values():
            assert len(file.sha256) == 64 and int(file.sha256, 16) >= 0, (name, file.name)
            assert file.size > 0, (name, file.name)


# ----------------------------------------------------------------------------- fake MNIST files


@pytest.fixture(autouse=True)
def isolated_from_real_data(tmp_path, monkeypatch):
    """No test below may find (or download into) the real data folders by accident."""
    monkeypatch.delenv(datasets.DATA_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(datasets, "REPO_DATA_ROOT", tmp_path / "repo" / "data")
    for name, info in DATASETS.items():
        system_dirs = {tmp_path / "system" / name / "datasets": package for _, package in info.system_dirs.items()}
        monkeypatch.setitem(DATASETS, name, info._replace(system_dirs=system_dirs))


def make_fake_mnist(seed=0):
    """Small arrays shaped like MNIST, and the IDX bytes of each file."""
    rng = np.random.default_rng(seed)
    arrays = Dataset(
        train_images=rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 10, 7, dtype=np.uint8),
        test_images=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 10, 3, dtype=np.uint8),
    )
    contents = {MNIST_FILE_NAMES[field]: encode_idx(getattr(arrays, field)) for field in ARRAY_FIELDS}
    return arrays, contents


def checksums_of(contents):
    return {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}


def fake_entry(info, contents):
    """The table entry `info` expecting the fake files `contents` instead of the real ones."""
    files = {
        field: file._replace(size=len(contents[file.name]), sha256=hashlib.sha256(contents[file.name]).hexdigest())
        for field, file in info.files.items()
    }
    return info._replace(files=files)


@pytest.fixture
def fake_mnist(monkeypatch):
    """The fake arrays and file contents; DATASETS["mnist"] now expects the fake files."""
    arrays, contents = make_fake_mnist()
    monkeypatch.setitem(DATASETS, "mnist", fake_entry(DATASETS["mnist"], contents))
    return arrays, contents


def expected_sha256(file_name, dataset="mnist"):
    return next(file.sha256 for file in DATASETS[dataset].files.values() if file.name == file_name)


def put_files(folder, contents, compress=True, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or contents:
        write(folder / (name + ".gz" if compress else name), contents[name], compress)
    return folder


def assert_same_mnist(loaded, expected):
    for field in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(loaded, field), getattr(expected, field), err_msg=field)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_load_mnist_reads_files_from_data_dir(tmp_path, fake_mnist, compress):
    arrays, contents = fake_mnist
    folder = put_files(tmp_path / "given", contents, compress)

    assert_same_mnist(load_mnist(data_dir=folder, download=False), arrays)


def test_load_mnist_accepts_a_checksums_argument_instead_of_the_module_table(tmp_path):
    arrays, contents = make_fake_mnist()
    folder = put_files(tmp_path / "given", contents)

    loaded = load_mnist(data_dir=folder, download=False, checksums=checksums_of(contents))

    assert_same_mnist(loaded, arrays)


def corrupt(contents):
    """Same shapes, different pixels: readable IDX files whose checksums do not match."""
    return {name: content[:-1] + bytes([content[-1] ^ 0xFF]) for name, content in contents.items()}


def test_load_mnist_prefers_data_dir_over_the_environment_variable_and_the_repo(tmp_path, fake_mnist, monkeypatch):
    arrays, contents = fake_mnist
    given = put_files(tmp_path / "given", contents)
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(put_files(tmp_path / "env", corrupt(contents))))
    put_files((datasets.REPO_DATA_ROOT / "mnist"), corrupt(contents))

    # had it read either of the corrupt copies, it would raise ChecksumError
    assert_same_mnist(load_mnist(data_dir=given, download=False), arrays)


def test_load_mnist_prefers_the_environment_variable_over_the_repo(tmp_path, fake_mnist, monkeypatch):
    arrays, contents = fake_mnist
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(put_files(tmp_path / "env", contents)))
    put_files((datasets.REPO_DATA_ROOT / "mnist"), corrupt(contents))

    assert_same_mnist(load_mnist(download=False), arrays)


def test_load_mnist_falls_back_to_the_repo_data_folder(fake_mnist):
    arrays, contents = fake_mnist
    put_files((datasets.REPO_DATA_ROOT / "mnist"), contents, compress=False)

    assert_same_mnist(load_mnist(download=False), arrays)


def test_load_mnist_looks_up_each_file_on_its_own(tmp_path, fake_mnist, monkeypatch):
    arrays, contents = fake_mnist
    names = list(contents)
    given = put_files(tmp_path / "given", contents, names=names[:2])
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(put_files(tmp_path / "env", contents, names=names[2:])))

    assert_same_mnist(load_mnist(data_dir=given, download=False), arrays)


def test_load_mnist_raises_checksum_error_for_a_damaged_local_file_instead_of_using_it(tmp_path, fake_mnist):
    _, contents = fake_mnist
    folder = put_files(tmp_path / "given", corrupt(contents))
    name = "train-images-idx3-ubyte"

    with pytest.raises(ChecksumError) as raised:
        load_mnist(data_dir=folder, download=False)

    message = str(raised.value)
    assert str(folder / (name + ".gz")) in message
    assert expected_sha256(name) in message
    assert hashlib.sha256(corrupt(contents)[name]).hexdigest() in message
    assert (folder / (name + ".gz")).exists()  # reported, not deleted behind the user's back


def test_load_mnist_without_files_and_without_download_says_where_it_looked(tmp_path, fake_mnist, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(tmp_path / "env"))

    with pytest.raises(DatasetNotFoundError) as raised:
        load_mnist(data_dir=tmp_path / "given", download=False)

    message = str(raised.value)
    assert isinstance(raised.value, FileNotFoundError)
    for place in (tmp_path / "given", tmp_path / "env", (datasets.REPO_DATA_ROOT / "mnist")):
        assert str(place) in message
    assert "download=False" in message
    assert "TINYGRAD_MNIST_DATA" in message and "data_dir" in message


# ----------------------------------------------------------------------------- downloads


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirror_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 nobody listens on: connecting is refused at once, as when offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


GZ_NAMES = sorted(name + ".gz" for name in MNIST_FILE_NAMES.values())


def test_download_puts_verified_files_into_the_cache_by_atomic_rename(tmp_path, fake_mnist, mirror_server, monkeypatch):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "mnist", contents)
    cache = tmp_path / "cache"
    renames = []
    real_replace = datasets.os.replace

    def recording_replace(source, destination):
        renames.append((Path(source), Path(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(datasets.os, "replace", recording_replace)

    loaded = load_mnist(data_dir=cache, mirrors=[base_url + "/mnist/"])

    assert_same_mnist(loaded, arrays)
    target = cache / "mnist"  # data_dir/<name>/, as the repository's data/<name>/
    assert files_in(cache) == ["mnist"]
    assert files_in(target) == GZ_NAMES  # no temporary files left behind
    assert sorted(destination.name for _, destination in renames) == GZ_NAMES
    assert all(source.parent == target and destination.parent == target for source, destination in renames)
    for name, content in contents.items():
        assert gzip.decompress((target / (name + ".gz")).read_bytes()) == content


def test_downloaded_files_are_used_next_time_without_the_network(tmp_path, fake_mnist, mirror_server, closed_port_url):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "mnist", contents)
    load_mnist(data_dir=tmp_path / "cache", mirrors=[base_url + "/mnist/"])

    assert_same_mnist(load_mnist(data_dir=tmp_path / "cache", mirrors=[closed_port_url]), arrays)


def test_download_goes_into_the_environment_variable_folder_when_no_data_dir_is_given(tmp_path, fake_mnist, mirror_server, monkeypatch):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "mnist", contents)
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(tmp_path / "env"))

    assert_same_mnist(load_mnist(mirrors=[base_url + "/mnist/"]), arrays)
    assert files_in(tmp_path / "env" / "mnist") == GZ_NAMES
    assert not (datasets.REPO_DATA_ROOT / "mnist").exists()


def test_download_tries_the_next_mirror_after_a_404(tmp_path, fake_mnist, mirror_server):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "second", contents)

    loaded = load_mnist(data_dir=tmp_path / "cache", mirrors=[base_url + "/first/", base_url + "/second/"])

    assert_same_mnist(loaded, arrays)
    assert files_in(tmp_path / "cache" / "mnist") == GZ_NAMES


def test_download_with_a_checksum_mismatch_raises_and_leaves_nothing_in_the_cache(tmp_path, fake_mnist, mirror_server):
    _, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "mnist", corrupt(contents))
    cache = tmp_path / "cache"

    with pytest.raises(ChecksumError) as raised:
        load_mnist(data_dir=cache, mirrors=[base_url + "/mnist/"])

    message = str(raised.value)
    name = "train-images-idx3-ubyte"
    assert name in message
    assert expected_sha256(name) in message
    assert hashlib.sha256(corrupt(contents)[name]).hexdigest() in message
    assert files_in(cache / "mnist") == []


def test_download_skips_a_mirror_serving_a_damaged_file(tmp_path, fake_mnist, mirror_server):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "bad", corrupt(contents))
    put_files(served / "good", contents)

    loaded = load_mnist(data_dir=tmp_path / "cache", mirrors=[base_url + "/bad/", base_url + "/good/"])

    assert_same_mnist(loaded, arrays)
    assert files_in(tmp_path / "cache" / "mnist") == GZ_NAMES


def test_download_of_a_truncated_file_raises_idx_error_and_leaves_nothing_in_the_cache(tmp_path, fake_mnist, mirror_server):
    _, contents = fake_mnist
    served, base_url = mirror_server
    (served / "mnist").mkdir()
    for name, content in contents.items():
        (served / "mnist" / (name + ".gz")).write_bytes(gzip.compress(content)[:-20])

    with pytest.raises(IDXError, match="broken gzip stream"):
        load_mnist(data_dir=tmp_path / "cache", mirrors=[base_url + "/mnist/"])
    assert files_in(tmp_path / "cache" / "mnist") == []


def test_offline_load_raises_not_found_naming_places_and_failed_mirrors(tmp_path, fake_mnist, closed_port_url, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(tmp_path / "env"))
    started = time.perf_counter()

    with pytest.raises(DatasetNotFoundError) as raised:
        load_mnist(data_dir=tmp_path / "given", mirrors=[closed_port_url])

    message = str(raised.value)
    for place in (tmp_path / "given", tmp_path / "env", (datasets.REPO_DATA_ROOT / "mnist")):
        assert str(place) in message
    assert closed_port_url + "train-images-idx3-ubyte.gz" in message
    assert "refused" in message.lower()
    assert "TINYGRAD_MNIST_DATA" in message
    assert files_in(tmp_path / "given" / "mnist") == []
    assert time.perf_counter() - started < 5


def test_subset_takes_the_first_examples_of_each_set_as_views():
    images = np.arange(5 * 2 * 2, dtype=np.uint8).reshape(5, 2, 2)
    labels = np.arange(5, dtype=np.uint8)
    mnist = Dataset(images, labels, images[:3], labels[:3])
    small = mnist.subset(train=2, test=None)
    assert small.train_labels.tolist() == [0, 1] and small.test_labels.tolist() == [0, 1, 2]
    assert np.shares_memory(small.train_images, images)
    assert all(np.array_equal(a, b) for a, b in zip(mnist.subset(), mnist))


# ----------------------------------------------------------------------------- faults around the data folder


def one_line(error):
    message = str(error)
    assert "\n" not in message, f"expected one line, got:\n{message}"
    return message


@pytest.mark.parametrize("given_as", ["environment variable", "data_dir"])
def test_a_data_folder_that_is_a_file_is_one_clear_error(tmp_path, fake_mnist, monkeypatch, given_as):
    _, contents = fake_mnist
    put_files(datasets.REPO_DATA_ROOT / "mnist", contents)  # found elsewhere: the setting is still wrong
    a_file = tmp_path / "mnist.tar.gz"
    a_file.write_bytes(b"not a folder")
    if given_as == "data_dir":
        call = functools.partial(load_mnist, data_dir=a_file)
    else:
        monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(a_file))
        call = load_mnist

    with pytest.raises(DatasetNotFoundError) as raised:
        call()

    message = one_line(raised.value)
    assert f"{a_file} is a file, not a folder" in message
    assert ("TINYGRAD_MNIST_DATA=" if given_as != "data_dir" else "data_dir=") in message


def read_only_file_system(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


def test_a_read_only_download_folder_without_the_files_is_one_clear_error(tmp_path, fake_mnist, monkeypatch, closed_port_url):
    # root may write anywhere, so a read-only file system is simulated where the download starts
    monkeypatch.setattr(datasets.tempfile, "mkstemp", read_only_file_system)
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(tmp_path / "cache"))

    with pytest.raises(DatasetNotFoundError) as raised:
        load_mnist(mirrors=[closed_port_url])

    message = one_line(raised.value)
    assert str(tmp_path / "cache" / "mnist") in message
    assert "Read-only file system" in message and "TINYGRAD_MNIST_DATA" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the test above simulates it")
def test_a_folder_without_write_permission_is_one_clear_error(tmp_path, fake_mnist, closed_port_url):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(DatasetNotFoundError) as raised:
            load_mnist(data_dir=cache, mirrors=[closed_port_url])
    finally:
        cache.chmod(0o755)
    assert "Permission denied" in one_line(raised.value)


def test_a_read_only_folder_that_has_the_files_still_loads(tmp_path, fake_mnist, monkeypatch, closed_port_url):
    arrays, contents = fake_mnist
    folder = put_files(tmp_path / "read-only", contents)
    old_part = folder / ".train-images-idx3-ubyte.x1y2.part"  # a killed download's, which cannot be removed
    old_part.write_bytes(b"partial")
    os.utime(old_part, (time.time() - 3600, time.time() - 3600))
    folder.chmod(0o555)
    monkeypatch.setattr(datasets.tempfile, "mkstemp", read_only_file_system)
    monkeypatch.setattr(Path, "unlink", read_only_file_system)
    try:
        loaded = load_mnist(data_dir=folder, mirrors=[closed_port_url])
    finally:
        folder.chmod(0o755)
    assert_same_mnist(loaded, arrays)


def test_the_next_load_removes_the_part_files_of_killed_downloads_but_not_live_ones(tmp_path, fake_mnist, mirror_server):
    arrays, contents = fake_mnist
    served, base_url = mirror_server
    put_files(served / "mnist", contents)
    target = tmp_path / "cache" / "mnist"
    target.mkdir(parents=True)
    killed = [target / f".{name}.k1ll3d.part" for name in contents]  # left by kill -9 an hour ago
    for part in killed:
        part.write_bytes(b"half a file")
        os.utime(part, (time.time() - 3600, time.time() - 3600))
    live = target / ".train-images-idx3-ubyte.l1v3.part"  # another process downloading right now
    live.write_bytes(b"arriving")

    loaded = load_mnist(data_dir=tmp_path / "cache", mirrors=[base_url + "/mnist/"])

    assert_same_mnist(loaded, arrays)
    assert files_in(target) == sorted(GZ_NAMES + [live.name])


class TricklingHandler(http.server.BaseHTTPRequestHandler):
    """A mirror that promises 100 kB and sends one byte every 50 ms: each read gets data well
    within any per-read timeout, so only a deadline for the whole file stops it."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(200):  # then it hangs up: 10 s at most, so even a loader without a deadline ends
                self.wfile.write(b"\x1f")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args):
        pass


def test_a_mirror_trickling_bytes_is_given_up_at_the_deadline_for_the_whole_file(tmp_path, fake_mnist, monkeypatch):
    monkeypatch.setattr(datasets, "DOWNLOAD_DEADLINE_SECONDS", 0.5)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TricklingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DatasetNotFoundError) as raised:
            load_mnist(data_dir=tmp_path / "cache", mirrors=[f"http://127.0.0.1:{server.server_address[1]}/"])
        elapsed = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert elapsed < 3, f"the download took {elapsed:.1f} s despite a 0.5 s deadline"
    assert "deadline for one file is 0.5 s" in str(raised.value)
    assert files_in(tmp_path / "cache" / "mnist") == []


# ----------------------------------------------------------------------------- two datasets, same file names


@pytest.fixture
def fake_pair(monkeypatch):
    """Fake files for both datasets (same names, different content); DATASETS expects them."""
    mnist_arrays, mnist_contents = make_fake_mnist(seed=0)
    fashion_arrays, fashion_contents = make_fake_mnist(seed=1)
    monkeypatch.setitem(DATASETS, "mnist", fake_entry(DATASETS["mnist"], mnist_contents))
    monkeypatch.setitem(DATASETS, "fashion-mnist", fake_entry(DATASETS["fashion-mnist"], fashion_contents))
    return (mnist_arrays, mnist_contents), (fashion_arrays, fashion_contents)


def test_one_data_folder_holds_each_dataset_in_a_subfolder_named_after_it(tmp_path, fake_pair):
    (mnist_arrays, mnist_contents), (fashion_arrays, fashion_contents) = fake_pair
    put_files(tmp_path / "data" / "mnist", mnist_contents)
    put_files(tmp_path / "data" / "fashion-mnist", fashion_contents)

    fashion = load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    mnist = load_dataset("mnist", data_dir=tmp_path / "data", download=False)

    assert_same_mnist(fashion, fashion_arrays)
    assert_same_mnist(mnist, mnist_arrays)
    assert fashion.classes[0] == "T-shirt/top" and mnist.classes[0] == "0"


def test_another_dataset_s_files_in_the_variable_s_folder_are_passed_over_for_the_system_folder(tmp_path, fake_pair, monkeypatch):
    (_, mnist_contents), (fashion_arrays, fashion_contents) = fake_pair
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(put_files(tmp_path / "mnist-files", mnist_contents)))
    (system_dir,) = DATASETS["fashion-mnist"].system_dirs
    put_files(system_dir, fashion_contents)

    assert_same_mnist(load_dataset("fashion-mnist", download=False), fashion_arrays)


def test_without_the_right_files_the_passed_over_ones_are_named(tmp_path, fake_pair, monkeypatch):
    (_, mnist_contents), _ = fake_pair
    monkeypatch.setenv(datasets.DATA_ENVIRONMENT_VARIABLE, str(put_files(tmp_path / "mnist-files", mnist_contents)))

    with pytest.raises(DatasetNotFoundError) as raised:
        load_dataset("fashion-mnist", download=False)

    message = str(raised.value)
    assert f"passed over: {tmp_path / 'mnist-files' / 'train-images-idx3-ubyte.gz'}" in message
    assert "is mnist's train-images-idx3-ubyte, not fashion-mnist's" in message
    assert "dataset-fashion-mnist" in message  # how to get it the Debian way


def test_a_damaged_file_that_belongs_to_no_dataset_still_stops_the_search(tmp_path, fake_pair):
    (_, mnist_contents), (_, fashion_contents) = fake_pair
    put_files(tmp_path / "given", corrupt(fashion_contents))
    (system_dir,) = DATASETS["fashion-mnist"].system_dirs
    put_files(system_dir, fashion_contents)

    with pytest.raises(ChecksumError, match="fashion-mnist's train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "given", download=False)


# ----------------------------------------------------------------------------- bounded by what is expected (issue 18)


class HeaderTricklingHandler(http.server.BaseHTTPRequestHandler):
    """A mirror that sends its status line and headers one byte every 50 ms: urlopen reads the
    headers itself, each read well within the socket timeout, so only a deadline around the whole
    request stops it."""

    def do_GET(self):
        headers = b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        try:
            for byte in headers[:200]:  # then it hangs up: 10 s at most, so even a loader without a deadline ends
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args):
        pass


def test_a_mirror_trickling_its_headers_is_given_up_at_the_deadline(tmp_path, fake_mnist, monkeypatch):
    # issue 18, item 10: the deadline was only checked while reading the body
    monkeypatch.setattr(datasets, "DOWNLOAD_DEADLINE_SECONDS", 0.5)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HeaderTricklingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DatasetNotFoundError) as raised:
            load_mnist(data_dir=tmp_path / "cache", mirrors=[f"http://127.0.0.1:{server.server_address[1]}/"])
        elapsed = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert elapsed < 3, f"the download took {elapsed:.1f} s despite a 0.5 s deadline"
    assert "within the deadline for one file, which is 0.5 s" in str(raised.value)
    assert files_in(tmp_path / "cache" / "mnist") == []


def peak_traced_bytes(function):
    """(what function() raised, the peak of memory Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            function()
        except Exception as error:  # noqa: BLE001 - returned for the test to check
            raised = error
        else:
            raised = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return raised, peak


def test_a_gzip_bomb_in_place_of_a_dataset_file_is_refused_before_it_is_inflated(tmp_path, fake_pair):
    # issue 18, item 11: a 0.99 MB train-images .gz declaring a gigabyte was inflated to 1.07 GB
    # before the checksum refused it; the dataset's file is known to hold at most its table size
    (_, contents), _ = fake_pair
    folder = put_files(tmp_path / "given", contents)
    bomb = gzip.compress(idx_header(0x08, 25_000, 28, 28) + bytes(25_000 * 28 * 28), compresslevel=9)  # 19.6 MB in 20 KB
    (folder / "train-images-idx3-ubyte.gz").write_bytes(bomb)

    raised, peak = peak_traced_bytes(lambda: load_mnist(data_dir=folder, download=False))

    assert isinstance(raised, IDXError) and "the file expected here holds 5504" in str(raised), raised
    assert "\n" not in str(raised)
    assert peak < 1 << 20, f"{peak} bytes allocated for a file that may hold 5504"


def test_a_sparse_raw_file_larger_than_the_dataset_file_is_refused_from_its_size(tmp_path, fake_pair):
    # issue 18, item 11: a 3.1 GB sparse raw file took 3.15 GB; here 200 MB, refused before reading
    (_, contents), _ = fake_pair
    folder = put_files(tmp_path / "given", contents, names=[name for name in contents if "train-images" not in name])
    sparse = folder / "train-images-idx3-ubyte"
    with open(sparse, "wb") as file:
        file.write(idx_header(0x08, 255_102, 28, 28))
        file.truncate(16 + 255_102 * 28 * 28)  # 200 MB of holes: nothing is written to disk

    started = time.perf_counter()
    raised, peak = peak_traced_bytes(lambda: load_mnist(data_dir=folder, download=False))

    assert isinstance(raised, IDXError) and "199999984 bytes, but the file expected here holds 5504" in str(raised), raised
    assert peak < 1 << 20 and time.perf_counter() - started < 5
