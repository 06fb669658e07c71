"""Checkpoints: atomic writes, exact round trips, and refusing every file that cannot be trusted."""

import io
import json
import zipfile

import numpy as np
import pytest

from tinygrad_mnist import nn, optim
from tinygrad_mnist.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def small_model(seed=0, sizes=(6, 5, 3)):
    return nn.mlp(list(sizes), rng=np.random.default_rng(seed))


def test_round_trip_keeps_every_array_bit_for_bit_and_the_record(tmp_path):
    model = small_model()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = np.ones_like(parameter.data)
    optimizer.step()
    path = save_checkpoint(tmp_path / "run.npz", model.state_dict(), optimizer.state_dict(), epoch=3, note="hi")

    loaded = load_checkpoint(path)
    assert loaded.meta == {"epoch": 3, "note": "hi"}
    for name, array in model.state_dict().items():
        assert loaded.model_state[name].dtype == array.dtype
        assert np.array_equal(loaded.model_state[name], array)
    assert set(loaded.optimizer_state) == {f"momentum_buffer.{i}" for i in range(4)}
    restored = small_model(seed=1)
    restored.load_state_dict(loaded.model_state)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(restored.parameters(), model.parameters()))


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    save_checkpoint(path, small_model().state_dict(), epoch=1)
    before = path.read_bytes()

    def crash_midway(file, **arrays):
        file.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # as if Ctrl-C or a kill arrived during the write

    monkeypatch.setattr(np, "savez", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, small_model(seed=5).state_dict(), epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary file left behind


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    data = path.read_bytes()
    for length in (0, 10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match="run.npz"):
            load_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    np.savez(path, weights=np.zeros(3))  # a valid npz, but not ours
    with pytest.raises(CheckpointError, match="no 'meta' record"):
        load_checkpoint(path)


def test_a_missing_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.npz")


def _rewrite(path, change):
    """Rewrite a checkpoint's arrays through `change(arrays)`, keeping the stored checksum."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def test_a_tampered_array_is_refused_by_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)

    def nudge(arrays):
        arrays["model/0.weight"] = arrays["model/0.weight"] + np.float32(1e-3)

    _rewrite(path, nudge)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_a_flipped_byte_inside_the_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("model/0.weight.npy")
    # a zip member is a 30-byte local header, its name, an extra field, then the stored bytes
    # (the .npy header, then the array): flip a bit of the array's last byte
    header = info.header_offset
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    last_byte = header + 30 + name_length + extra_length + info.compress_size - 1
    data[last_byte] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)

    def smuggle(arrays):
        arrays["model/0.weight"] = np.array([{"evil": True}], dtype=object)

    _rewrite(path, smuggle)
    with pytest.raises(CheckpointError, match="damaged .npy header"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)

    def other_format(arrays):
        record = json.loads(str(arrays["meta"]))
        record["format"] = "someone-else/9"
        arrays["meta"] = np.array(json.dumps(record))

    _rewrite(path, other_format)
    with pytest.raises(CheckpointError, match="someone-else/9"):
        load_checkpoint(path)


def test_loading_into_another_architecture_names_the_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model(sizes=(6, 5, 3)).state_dict(), epoch=1)
    state = load_checkpoint(path).model_state
    with pytest.raises(ValueError, match=r"0.weight.*\(5, 6\).*\(4, 6\)"):
        small_model(sizes=(6, 4, 3)).load_state_dict(state)
    with pytest.raises(KeyError, match="missing.*4.weight"):
        small_model(sizes=(6, 5, 3, 3)).load_state_dict(state)
    with pytest.raises(TypeError, match="float64"):
        nn.mlp([6, 5, 3], dtype=np.float64).load_state_dict(state)
