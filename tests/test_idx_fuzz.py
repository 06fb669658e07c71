"""Fuzzing read_idx: a damaged file may only give an ndarray or an IDXError.

Any other exception (struct.error, EOFError, zlib.error, MemoryError, ...) is a bug, and so is a
hang or an allocation far beyond the file's size. Two sources of damaged files:
  - seeded mutations of small valid files, raw and gzip: flipped bytes, cuts, appended and
    inserted bytes, rewritten header fields (type code, dimension count, dimension sizes), and
    damage to the compressed stream itself;
  - hypothesis: arbitrary bytes, and arbitrary headers in front of arbitrary data.
"""

import contextlib
import gzip
import signal
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygrad_mnist.lab.idx import IDX_TYPES, IDXError, encode_idx, read_idx

SEED = 20240601
MUTANTS_PER_FILE = 40
VALID_FILES = 100  # x 40 mutants = 4000 cases, each at most a few hundred bytes
MAX_CASE_SECONDS = 1.0
MAX_CASE_ALLOCATION_BYTES = 2 << 20  # the files are < 2 KB: anything near this is a header being trusted
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no `except Exception` in the reader can hide it."""


@contextlib.contextmanager
def fails_after(seconds):
    """Turn a hang into a test failure instead of a stuck test run."""

    def on_alarm(signal_number, frame):
        raise Hang(f"read_idx ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def valid_file(rng):
    """IDX bytes of a random small array: any IDX dtype, 1 to 3 dimensions of size 1 to 5."""
    shape = tuple(rng.integers(1, 6, size=rng.integers(1, 4)))
    dtype = DTYPES[rng.integers(len(DTYPES))]
    array = (rng.standard_normal(shape) * 1000).astype(dtype)
    return encode_idx(array)


def random_bytes(rng, count):
    return rng.integers(0, 256, count, dtype=np.uint8).tobytes()


def flip_bytes(content, rng):
    mutated = bytearray(content)
    for position in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
        mutated[position] ^= int(rng.integers(1, 256))
    return bytes(mutated)


def truncate(content, rng):
    return content[: rng.integers(0, len(content))]


def append_bytes(content, rng):
    return content + random_bytes(rng, int(rng.integers(1, 17)))


def insert_bytes(content, rng):
    position = int(rng.integers(0, len(content) + 1))
    return content[:position] + random_bytes(rng, int(rng.integers(1, 9))) + content[position:]


def delete_bytes(content, rng):
    start = int(rng.integers(0, len(content)))
    return content[:start] + content[start + int(rng.integers(1, 9)) :]


def rewrite_type_or_dimension_count(content, rng):
    mutated = bytearray(content)
    mutated[int(rng.integers(2, 4))] = int(rng.integers(0, 256))
    return bytes(mutated)


def rewrite_a_dimension(content, rng):
    dimension_count = content[3]
    # small, exact-ish, huge and zero sizes all deserve a try
    size = int(rng.choice([0, 1, int(rng.integers(2, 100)), int(rng.integers(2**20, 2**32)), 2**32 - 1]))
    offset = 4 + 4 * int(rng.integers(0, dimension_count))
    return content[:offset] + struct.pack(">I", size) + content[offset + 4 :]


IDX_MUTATIONS = [flip_bytes, truncate, append_bytes, insert_bytes, delete_bytes,
                 rewrite_type_or_dimension_count, rewrite_a_dimension]
# damage to the compressed bytes themselves (applied after gzip)
GZIP_MUTATIONS = [flip_bytes, truncate, append_bytes, insert_bytes, delete_bytes]


def mutants(rng):
    """(description, file bytes) pairs: damaged IDX content stored raw or gzipped, or valid IDX
    content inside a damaged gzip stream."""
    for _ in range(VALID_FILES):
        content = valid_file(rng)
        for _ in range(MUTANTS_PER_FILE):
            kind = rng.integers(3)
            if kind == 2:
                mutation = GZIP_MUTATIONS[rng.integers(len(GZIP_MUTATIONS))]
                yield f"gzip stream {mutation.__name__}", mutation(gzip.compress(content), rng)
                continue
            mutation = IDX_MUTATIONS[rng.integers(len(IDX_MUTATIONS))]
            mutated = mutation(content, rng)
            if kind == 1:
                yield f"gzip of {mutation.__name__}", gzip.compress(mutated)
            else:
                yield f"raw {mutation.__name__}", mutated


def read_idx_or_idx_error(path):
    """read_idx's result, or the IDXError it raised; anything else propagates and fails the test."""
    try:
        return read_idx(path)
    except IDXError as error:
        return error


def test_mutated_idx_files_give_an_array_or_an_idx_error_quickly_and_without_big_allocations(tmp_path):
    rng = np.random.default_rng(SEED)
    path = tmp_path / "case-idx"
    outcomes = {"array": 0, "IDXError": 0}
    slowest_seconds = 0.0
    tracemalloc.start()
    try:
        for case_number, (description, content) in enumerate(mutants(rng)):
            path.write_bytes(content)
            tracemalloc.reset_peak()
            started = time.perf_counter()
            try:
                with fails_after(5 * MAX_CASE_SECONDS):
                    result = read_idx_or_idx_error(path)
            except BaseException as error:  # report which case broke, then fail with its bytes
                raise AssertionError(
                    f"case {case_number} ({description}) raised {type(error).__name__}: {error}\n"
                    f"file bytes: {content.hex()}"
                ) from error
            slowest_seconds = max(slowest_seconds, time.perf_counter() - started)
            _, peak_bytes = tracemalloc.get_traced_memory()
            assert peak_bytes < MAX_CASE_ALLOCATION_BYTES, (
                f"case {case_number} ({description}) allocated {peak_bytes} bytes for a "
                f"{len(content)}-byte file: {content.hex()}"
            )
            if isinstance(result, IDXError):
                outcomes["IDXError"] += 1
            else:
                assert isinstance(result, np.ndarray) and result.dtype.isnative
                assert result.nbytes <= 1032 * len(content)
                outcomes["array"] += 1
    finally:
        tracemalloc.stop()

    cases = sum(outcomes.values())
    print(f"fuzzed {cases} files: {outcomes}, slowest {slowest_seconds * 1000:.1f} ms")
    assert cases >= 1000
    assert slowest_seconds < MAX_CASE_SECONDS
    # both outcomes occur, so the mutations neither always break nor never break the files
    assert outcomes["array"] > cases // 100 and outcomes["IDXError"] > cases // 2


@pytest.fixture(scope="module")
def scratch_file(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis") / "case-idx"


FUZZ_SETTINGS = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ_SETTINGS
@given(content=st.binary(max_size=400), compress=st.booleans())
def test_arbitrary_bytes_give_an_array_or_an_idx_error(scratch_file, content, compress):
    scratch_file.write_bytes(gzip.compress(content) if compress else content)

    result = read_idx_or_idx_error(scratch_file)

    assert isinstance(result, (np.ndarray, IDXError))


@FUZZ_SETTINGS
@given(
    type_code=st.one_of(st.sampled_from(sorted(IDX_TYPES)), st.integers(0, 255)),
    shape=st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), max_size=5),
    payload=st.binary(max_size=400),
    compress=st.booleans(),
)
def test_arbitrary_headers_in_front_of_arbitrary_data_give_an_array_or_an_idx_error(
    scratch_file, type_code, shape, payload, compress
):
    header = bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    content = header + payload
    scratch_file.write_bytes(gzip.compress(content) if compress else content)

    result = read_idx_or_idx_error(scratch_file)

    assert isinstance(result, (np.ndarray, IDXError))
    if isinstance(result, np.ndarray):  # it accepted the file: then it read it exactly
        assert result.shape == tuple(shape)
        assert result.nbytes == len(payload)
