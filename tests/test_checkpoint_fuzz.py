"""Fuzzing load_checkpoint: a damaged checkpoint may only load as the original or be refused.

Every mutant of a valid checkpoint must either load to a Checkpoint equal to the original, array
for array and field for field, or raise CheckpointError (FileNotFoundError only when there is no
file). Any other exception (zipfile's RuntimeError or NotImplementedError, tokenize's TokenError,
MemoryError, UnicodeDecodeError, ...) is a bug, and so is a hang or an allocation beyond a few
times the file's size. The mutations:
  - flipped bits and changed bytes anywhere, and aimed at the zip and .npy headers;
  - truncations, and bytes appended or inserted;
  - rewritten fields of the zip headers (compression method, flags, sizes, CRC, offsets);
  - edited records: the JSON changed and the zip rebuilt around it, so only the checksum can tell.
"""

import contextlib
import io
import json
import signal
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from tinygrad_mnist import nn, optim
from tinygrad_mnist.lab.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint

SEED = 20261127
MUTANTS = 10_000
MAX_CASE_SECONDS = 2.0  # a load takes about a millisecond; a case this slow is a hang
MAX_ALLOCATION_FACTOR = 4  # peak memory of one load, in units of the file's size (plus a little)
TRACED_EVERY = 10  # tracemalloc triples the time of a load, so it measures every tenth case
ADDRESS_SPACE_MARGIN = 512 << 20  # and every case runs under a hard cap: this much above the start


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no `except Exception` in the reader can hide it."""


@contextlib.contextmanager
def address_space_capped(margin):
    """Make any allocation beyond `margin` more bytes a MemoryError (Linux), so one mutant that a
    reader trusts cannot take the machine's memory before the test sees it."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            in_use = int(statm.read().split()[0]) * resource.getpagesize()
    except (ImportError, OSError):
        yield  # no cap on this system; the traced cases still bound the memory
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = in_use + margin if hard == resource.RLIM_INFINITY else min(in_use + margin, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def fails_after(seconds):
    def on_alarm(signal_number, frame):
        raise Hang(f"load_checkpoint ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def original_checkpoint(path):
    """A small but complete checkpoint: an MLP, SGD momentum buffers, and a run's record."""
    rng = np.random.default_rng(SEED)
    model = nn.mlp([8, 6, 4], rng=rng)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = rng.standard_normal(parameter.data.shape).astype(np.float32)
    optimizer.step()
    save_checkpoint(path, model.state_dict(), optimizer.state_dict(), epoch=2, layer_sizes=[8, 6, 4],
                    settings={"lr": 0.1, "momentum": 0.9, "seed": 0}, rng_state=rng.bit_generator.state)
    return path.read_bytes()


def zip_headers(content):
    """Offsets of every local header, central directory entry and the end record in a zip."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        locals_ = [info.header_offset for info in archive.infolist()]
    centrals = []
    position = content.find(b"PK\x01\x02")
    while position != -1:
        centrals.append(position)
        position = content.find(b"PK\x01\x02", position + 1)
    return locals_, centrals, content.rfind(b"PK\x05\x06")


# (offset in the header, width in bytes) of the fields worth rewriting
LOCAL_FIELDS = [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]
CENTRAL_FIELDS = [(6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (34, 2), (38, 4), (42, 4)]
END_FIELDS = [(4, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]
INTERESTING = [0, 1, 2, 8, 9, 12, 14, 99, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 10**9]


def flip_bits(content, rng, positions=None):
    mutated = bytearray(content)
    for position in rng.choice(positions if positions is not None else len(mutated), size=rng.integers(1, 4)):
        mutated[position] ^= 1 << int(rng.integers(8))
    return bytes(mutated)


def change_bytes(content, rng):
    mutated = bytearray(content)
    for position in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
        mutated[position] = int(rng.integers(256))
    return bytes(mutated)


def truncate(content, rng):
    return content[: rng.integers(0, len(content))]


def insert_or_append(content, rng):
    extra = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    position = int(rng.integers(0, len(content) + 1))
    return content[:position] + extra + content[position:]


def rewrite_zip_field(content, rng, headers):
    locals_, centrals, end = headers
    kind = rng.integers(3)
    if kind == 0:
        base, (offset, width) = rng.choice(locals_), LOCAL_FIELDS[rng.integers(len(LOCAL_FIELDS))]
    elif kind == 1:
        base, (offset, width) = rng.choice(centrals), CENTRAL_FIELDS[rng.integers(len(CENTRAL_FIELDS))]
    else:
        base, (offset, width) = end, END_FIELDS[rng.integers(len(END_FIELDS))]
    value = INTERESTING[rng.integers(len(INTERESTING))] if rng.random() < 0.7 else int(rng.integers(0, 1 << (8 * width)))
    mutated = bytearray(content)
    mutated[base + offset : base + offset + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(mutated)


def flip_in_npy_headers(content, rng, npy_header_positions):
    return flip_bits(content, rng, npy_header_positions)


def edit_record(members, rng):
    """Change the JSON record and rebuild a consistent zip around it (CRCs and sizes right), as an
    editor would: only the checksum can tell."""
    original = str(np.load(io.BytesIO(members["meta.npy"]), allow_pickle=False))
    text = original
    while text == original:  # some draws change nothing (epoch 2 -> 2): draw again
        text = edited_record(original, rng)
    record = io.BytesIO()
    np.save(record, np.array(text))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, record.getvalue() if name == "meta.npy" else data)
    return buffer.getvalue()


def edited_record(text, rng):
    record = json.loads(text)
    choice = rng.integers(6)
    if choice == 0:
        record["meta"]["epoch"] = int(rng.integers(0, 5))  # 2 -> 1 is the example
        text = json.dumps(record)
    elif choice == 1:
        record["meta"]["settings"]["lr"] = float(rng.choice([0.1, 0.2, 1e-3]))
        text = json.dumps(record)
    elif choice == 2:
        name = sorted(record["arrays"])[rng.integers(len(record["arrays"]))]
        record["arrays"][name][1] = [int(size) for size in rng.integers(0, 10, size=rng.integers(0, 3))]
        text = json.dumps(record)
    elif choice == 3:
        text = text.replace(": ", ":", int(rng.integers(1, 4)))  # the same record, spelled differently
    elif choice == 4:
        position = int(rng.integers(len(text)))
        text = text[:position] + chr(int(rng.integers(32, 127))) + text[position + 1 :]
    else:
        record["meta"]["note"] = "x" * int(rng.integers(0, 300))
        text = json.dumps(record)
    return text


def assert_equal_checkpoints(loaded, original):
    assert isinstance(loaded, Checkpoint)
    assert loaded.meta == original.meta
    for ours, theirs in ((loaded.model_state, original.model_state), (loaded.optimizer_state, original.optimizer_state)):
        assert list(ours) == list(theirs)
        for name in ours:
            assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name])


def test_every_mutant_loads_as_the_original_or_is_refused_with_a_checkpoint_error(tmp_path):
    content = original_checkpoint(tmp_path / "original.npz")
    original = load_checkpoint(tmp_path / "original.npz")
    headers = zip_headers(content)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    npy_headers = [position + offset for position in range(len(content)) if content.startswith(b"\x93NUMPY", position)
                   for offset in range(128) if position + offset < len(content)]
    strategies = [
        ("flip bits", lambda rng: flip_bits(content, rng)),
        ("change bytes", lambda rng: change_bytes(content, rng)),
        ("truncate", lambda rng: truncate(content, rng)),
        ("insert bytes", lambda rng: insert_or_append(content, rng)),
        ("zip header field", lambda rng: rewrite_zip_field(content, rng, headers)),
        ("npy header bits", lambda rng: flip_in_npy_headers(content, rng, npy_headers)),
        ("edit record", lambda rng: edit_record(members, rng)),
    ]
    rng = np.random.default_rng(SEED)
    path = tmp_path / "mutant.npz"
    outcomes = {name: {"loaded": 0, "refused": 0} for name, _ in strategies}
    started = time.perf_counter()
    peaks = []
    with address_space_capped(ADDRESS_SPACE_MARGIN):
        for case in range(MUTANTS):
            name, mutate = strategies[case % len(strategies)]
            mutant = mutate(rng)
            path.unlink(missing_ok=True)  # a new file: truncating one in place is slow on ext4
            path.write_bytes(mutant)
            traced = case % TRACED_EVERY == 0
            if traced:
                tracemalloc.start()
            try:
                with fails_after(MAX_CASE_SECONDS):
                    loaded = load_checkpoint(path)
            except CheckpointError as error:
                outcomes[name]["refused"] += 1
                assert "\n" not in str(error) and str(path) in str(error)
            except Exception as error:  # pragma: no cover - the failure this test exists to catch
                pytest.fail(f"case {case} ({name}): {type(error).__name__}: {error}")
            else:
                outcomes[name]["loaded"] += 1
                assert_equal_checkpoints(loaded, original)
            finally:
                if traced:
                    peaks.append(tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
            if traced:
                assert peaks[-1] < MAX_ALLOCATION_FACTOR * len(mutant) + (1 << 20), f"case {case} ({name}): {peaks[-1]} bytes"
    print(f"{MUTANTS} mutants of a {len(content)}-byte checkpoint in {time.perf_counter() - started:.1f} s, "
          f"largest traced peak {max(peaks)} bytes: {outcomes}")
    for name, counts in outcomes.items():
        assert counts["refused"] > 0, f"no {name} mutant was refused: the strategy does nothing"
    assert outcomes["edit record"]["loaded"] == 0  # every edit of the record, even whitespace, is refused
