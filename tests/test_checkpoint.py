"""Checkpoints: atomic writes, exact round trips, and refusing every file that cannot be trusted."""

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import nn, optim
from tinygrad_mnist.lab.checkpoint import CheckpointError, check_save_target, load_checkpoint, save_checkpoint


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


# ---------------------------------------------------------------- the record is under the checksum


def _record(path):
    with np.load(path, allow_pickle=False) as archive:
        return str(archive["meta"])


def _set_record(arrays, text):
    arrays["meta"] = np.array(text)


def test_editing_the_epoch_in_the_record_is_refused_by_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=2, settings={"lr": 0.1})
    edited = _record(path).replace('"epoch": 2', '"epoch": 1')
    assert edited != _record(path)
    _rewrite(path, lambda arrays: _set_record(arrays, edited))  # a consistent zip, the old checksum
    with pytest.raises(CheckpointError, match="record and arrays do not match the checksum"):
        load_checkpoint(path)


def test_any_byte_of_the_record_changed_is_refused_even_when_the_json_means_the_same(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=2, note="abc")
    original = _record(path)
    for edited in (original.replace('"abc"', '"abd"'), original.replace(": ", ":", 1), original + " "):
        _rewrite(path, lambda arrays: _set_record(arrays, edited))
        with pytest.raises(CheckpointError, match="checksum"):
            load_checkpoint(path)


def test_a_checkpoint_of_the_older_format_says_it_was_made_by_an_older_version(tmp_path):
    path = tmp_path / "old.npz"  # as the first format wrote it: the checksum covered only the arrays
    record = {"format": "tinygrad_mnist.checkpoint/1", "sha256": "0" * 64, "epoch": 1}
    np.savez(path, **{"model/0.weight": np.zeros((5, 6), np.float32)}, meta=np.array(json.dumps(record)))
    with pytest.raises(CheckpointError, match="made by an older version of tinygrad_mnist"):
        load_checkpoint(path)


# ------------------------------------------------------- whatever the bytes, only CheckpointError


def _member_offsets(data, name):
    """(local header offset, central directory entry offset) of a zip member."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local = archive.getinfo(name).header_offset
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.find(b"PK\x01\x02", central + 1)
    return local, central


def test_every_flipped_bit_in_an_npy_header_is_refused_even_with_the_zip_crc_made_right(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = members["model/0.weight.npy"]
    header_length = 10 + int.from_bytes(header[8:10], "little")
    for position in range(header_length):
        for bit in range(8):
            mutated = bytearray(header)
            mutated[position] ^= 1 << bit
            path.unlink()  # a new file each time: truncating one in place is slow on ext4
            with zipfile.ZipFile(path, "w") as archive:  # a consistent zip: only the .npy header is wrong
                for name, data in members.items():
                    archive.writestr(name, bytes(mutated) if name == "model/0.weight.npy" else data)
            with pytest.raises(CheckpointError):
                load_checkpoint(path)


@pytest.mark.parametrize("method", [8, 12, 14, 99])  # deflate, bzip2, lzma, AES
def test_a_changed_compression_method_is_refused(tmp_path, method):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    original = load_checkpoint(path)
    data = bytearray(path.read_bytes())
    local, central = _member_offsets(data, "model/0.weight.npy")
    data[central + 10 : central + 12] = method.to_bytes(2, "little")  # the zip directory's copy: the one readers use
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"compression method {method}"):
        load_checkpoint(path)
    data[central + 10 : central + 12] = bytes(2)
    data[local + 8 : local + 10] = method.to_bytes(2, "little")  # the local copy is never read: the bytes are intact
    path.write_bytes(bytes(data))
    assert np.array_equal(load_checkpoint(path).model_state["0.weight"], original.model_state["0.weight"])


def test_the_zip_encrypted_flag_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    data = bytearray(path.read_bytes())
    _, central = _member_offsets(data, "model/0.weight.npy")
    data[central + 8] |= 0x01  # general purpose flag bit 0: encrypted
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="encrypted"):
        load_checkpoint(path)


def test_a_plain_npy_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.zeros((5, 6), np.float32))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_a_text_file_is_refused_without_advice_about_pickles(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text\n" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as caught:
        load_checkpoint(path)
    assert "pickle" not in str(caught.value)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, members):
    """A consistent zip of `members` (name -> bytes): CRCs and sizes right, whatever the bytes."""
    path.unlink(missing_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("member", ["meta.npy", "sha256.npy"])
def test_text_beyond_unicode_is_refused_even_with_the_zip_crc_made_right(tmp_path, member):
    # str() of a numpy unicode array whose one character is past U+10FFFF raises SystemError
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    members = _members(path)
    members[member] = _npy(np.array("x"))[:-4] + b"\xff\xff\xff\xff"
    _write_zip(path, members)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_an_empty_array_with_a_dimension_past_int64_is_refused(tmp_path):
    # the record, the header and the checksum agree on (0, 10**30), a shape np.load cannot make
    record = json.dumps({"format": "tinygrad_mnist.checkpoint/2", "arrays": {"model/w": ["<f4", [0, 10**30]]}, "meta": {}})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (0, 10**30)})
    _write_zip(tmp_path / "run.npz", {"meta.npy": _npy(np.array(record)), "model/w.npy": header.getvalue(),
                                      "sha256.npy": _npy(np.array(hashlib.sha256(record.encode()).hexdigest()))})
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "run.npz")


def test_a_long_npy_header_is_refused_before_python_parses_it(tmp_path):
    # numpy's own limit is 10,000 characters, but Python's parser raises MemoryError on "---...1"
    # from about 5,000: the reader allows 1,024 (numpy writes 128)
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    members = _members(path)
    header = ("-" * 8000 + "1").encode()
    members["meta.npy"] = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    _write_zip(path, members)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def _with_header_shape(path, shape, record_shape=None):
    """Rewrite model/0.weight's .npy header (and, if given, the record) to declare another shape,
    keeping the data as it is: a small file that claims a huge array."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    old = members["model/0.weight.npy"]
    header_end = 10 + int.from_bytes(old[8:10], "little")
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    members["model/0.weight.npy"] = old[:8] + len(text).to_bytes(2, "little") + text.encode() + old[header_end:]
    if record_shape is not None:
        record = json.loads(str(np.load(io.BytesIO(members["meta.npy"]))))
        record["arrays"]["model/0.weight"][1] = list(record_shape)
        buffer = io.BytesIO()
        np.save(buffer, np.array(json.dumps(record)))
        members["meta.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("record_agrees", [False, True])
def test_a_header_declaring_a_trillion_elements_is_refused_without_allocating_them(tmp_path, record_agrees):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    _with_header_shape(path, (10**12,), record_shape=(10**12,) if record_agrees else None)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="its record says|more array bytes .* than the file holds"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def _compressed_zeros_bomb(path, gigabytes=1.2):
    """A ~1 MB .npz whose one deflated member declares `gigabytes` of float32 zeros, built without
    ever holding them: deflate blocks ending in a full flush do not depend on what came before,
    so one compressed megabyte of zeros is repeated."""
    megabyte = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(megabyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(megabyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    megabytes = int(gigabytes * 1024)
    stream = first + repeated * (megabytes - 1) + compressor.flush()
    elements = megabytes * (1 << 20) // 4
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % elements
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    npy_header = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    payload = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = payload.compress(npy_header) + payload.flush(zlib.Z_FULL_FLUSH)
    record = {"format": "tinygrad_mnist.checkpoint/2", "arrays": {"model/0.weight": ["<f4", [elements]]}, "meta": {}}
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps(record)))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta.npy", meta.getvalue())
        digest = io.BytesIO()
        np.save(digest, np.array("0" * 64))
        archive.writestr("sha256.npy", digest.getvalue())
        info = zipfile.ZipInfo("model/0.weight.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, b"")  # a placeholder entry; patched below
    data = bytearray(path.read_bytes())
    local, central = _member_offsets(data, "model/0.weight.npy")
    compressed = head + stream
    name_and_extra = 30 + int.from_bytes(data[local + 26 : local + 28], "little") + int.from_bytes(data[local + 28 : local + 30], "little")
    old_size = int.from_bytes(data[local + 18 : local + 22], "little")
    size = len(npy_header) + elements * 4
    for header_offset, sizes_at in ((local, 18), (central, 20)):
        data[header_offset + sizes_at : header_offset + sizes_at + 4] = len(compressed).to_bytes(4, "little")
        data[header_offset + sizes_at + 4 : header_offset + sizes_at + 8] = size.to_bytes(4, "little")
    body_start = local + name_and_extra
    data[body_start : body_start + old_size] = compressed
    shift = len(compressed) - old_size
    end = data.rfind(b"PK\x05\x06")  # the central directory moved by `shift`
    directory_offset = int.from_bytes(data[end + 16 : end + 20], "little") + shift
    data[end + 16 : end + 20] = directory_offset.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return size


def test_a_one_megabyte_file_declaring_1_2_gb_of_zeros_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "bomb.npz"
    declared = _compressed_zeros_bomb(path)
    assert path.stat().st_size < 2 << 20 and declared > 1.2e9
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="compression method 8"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the file is ~1.2 MB; nothing near the declared 1.2 GB was allocated


def test_a_member_declaring_more_bytes_than_the_file_holds_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    data = bytearray(path.read_bytes())
    _, central = _member_offsets(data, "model/0.weight.npy")
    data[central + 20 : central + 28] = (1_200_000_000).to_bytes(4, "little") * 2  # compressed and real size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="more than the file holds"):
        load_checkpoint(path)


def test_a_folder_a_path_under_a_file_and_a_pipe_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="part of that path is a file"):
        load_checkpoint(tmp_path / "notes.txt" / "run.npz")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.npz")  # opening it would wait for a writer forever
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_checkpoint(tmp_path / "pipe.npz")


# --------------------------------------------------------------------------------------- writing


def _small_tmpfs(folder, size, read_only=False):
    """Mount a tmpfs of `size` bytes at `folder`, or skip: it needs root and a kernel that allows it."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs Linux and root")
    folder.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    return folder


@pytest.fixture
def mounts():
    mounted = []
    yield mounted
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_non_finite_weights_are_never_saved_and_the_previous_checkpoint_is_kept(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    before = path.read_bytes()
    diverged = small_model().state_dict()
    diverged["2.bias"] = np.array([0.0, np.nan, 1.0], np.float32)
    with pytest.raises(CheckpointError, match=r"model state '2.bias' holds NaN or Inf .*previous checkpoint is kept"):
        save_checkpoint(path, diverged, epoch=2)
    with pytest.raises(CheckpointError, match="optimizer state 'momentum_buffer.0'"):
        save_checkpoint(path, small_model().state_dict(), {"momentum_buffer.0": np.array([np.inf])}, epoch=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def _assert_failed_write_left_no_trace(folder, before):
    assert (folder / "run.npz").read_bytes() == before  # the previous checkpoint, intact
    assert sorted(p.name for p in folder.iterdir()) == ["run.npz"]  # no temporary file left behind


def test_a_full_disk_is_one_line_and_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, mounts):
    folder = _small_tmpfs(tmp_path / "small", 64 << 10)
    mounts.append(folder)
    path = save_checkpoint(folder / "run.npz", small_model().state_dict(), epoch=1)  # ~3 KB: fits
    before = path.read_bytes()
    big = small_model(sizes=(100, 100, 10)).state_dict()  # ~45 KB, and the old file still holds its space
    big.update({f"extra.{i}": np.ones(4000, np.float32) for i in range(3)})
    with pytest.raises(CheckpointError, match="the disk is full") as caught:
        save_checkpoint(path, big, epoch=2)
    assert "\n" not in str(caught.value) and "previous checkpoint is unchanged" in str(caught.value)
    _assert_failed_write_left_no_trace(folder, before)


def test_a_write_error_reported_by_the_os_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    before = path.read_bytes()

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 part of a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(CheckpointError, match=r"run.npz: the disk is full; free some space or save elsewhere"):
        save_checkpoint(path, small_model(seed=5).state_dict(), epoch=2)
    _assert_failed_write_left_no_trace(tmp_path, before)


def test_a_read_only_file_system_is_one_line(tmp_path, mounts):
    folder = _small_tmpfs(tmp_path / "read-only", 64 << 10, read_only=True)
    mounts.append(folder)
    with pytest.raises(CheckpointError, match="the file system is read-only; save elsewhere"):
        save_checkpoint(folder / "run.npz", small_model().state_dict(), epoch=1)
    with pytest.raises(CheckpointError, match="read-only"):
        check_save_target(folder / "run.npz")


def test_a_folder_without_write_permission_is_one_line(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = save_checkpoint(folder / "run.npz", small_model().state_dict(), epoch=1)
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this process may write to read-only folders (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(CheckpointError, match="permission denied"):
            save_checkpoint(path, small_model(seed=5).state_dict(), epoch=2)
        with pytest.raises(CheckpointError, match="permission denied"):
            check_save_target(path, overwrite=True)
    finally:
        folder.chmod(0o755)
    _assert_failed_write_left_no_trace(folder, before)


def test_saving_onto_a_folder_or_under_a_file_is_one_line(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(CheckpointError, match="it is a folder; give a file path such as"):
        save_checkpoint(tmp_path / "runs", small_model().state_dict(), epoch=1)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match=r"notes.txt is a file, not a folder"):
        save_checkpoint(tmp_path / "notes.txt" / "deeper" / "run.npz", small_model().state_dict(), epoch=1)


def test_the_next_save_removes_temporary_files_a_killed_save_left_behind(tmp_path):
    stale = [tmp_path / ".run.npz.k3x_9q2a.tmp", tmp_path / ".run.npz.00000000.tmp"]
    others = [tmp_path / ".other.npz.k3x_9q2a.tmp", tmp_path / ".run.npz.notes.txt", tmp_path / "run.npz.k3x_9q2a.tmp"]
    for file in stale + others:
        file.write_bytes(b"PK\x03\x04 half a checkpoint")
    save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.npz"] + [file.name for file in others])


# ----------------------------------------------------------------------- checking a save target


def test_check_save_target_accepts_a_new_path_and_makes_its_folder(tmp_path):
    target = tmp_path / "runs" / "today" / "run.npz"
    assert check_save_target(target) == target
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []  # the write probe is gone


def test_check_save_target_refuses_a_folder_and_a_path_under_a_file(tmp_path):
    with pytest.raises(CheckpointError, match="it is a folder"):
        check_save_target(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="notes.txt is a file, not a folder"):
        check_save_target(tmp_path / "notes.txt" / "run.npz")


def test_check_save_target_refuses_another_runs_checkpoint_unless_resumed_or_overwritten(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "run.npz", small_model().state_dict(), epoch=3)
    with pytest.raises(CheckpointError, match="already exists and is not the checkpoint being resumed.*--overwrite"):
        check_save_target(path)
    with pytest.raises(CheckpointError, match="already exists"):
        check_save_target(path, resuming=tmp_path / "other.npz")
    assert check_save_target(path, overwrite=True) == path
    (tmp_path / "sub").mkdir()
    assert check_save_target(path, resuming=tmp_path / "sub" / ".." / "run.npz") == path  # the same file
    monkeypatch.chdir(tmp_path)
    assert check_save_target("run.npz", resuming=path) == Path("run.npz")
    (tmp_path / "notes.npz").write_text("not a checkpoint, but someone's file")
    with pytest.raises(CheckpointError, match="already exists"):
        check_save_target(tmp_path / "notes.npz")


def test_check_save_target_reports_a_folder_it_cannot_write_to(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match="run.npz: the file system is read-only; save elsewhere"):
        check_save_target(tmp_path / "run.npz")


def test_the_format_name_stays_the_one_older_files_carry(tmp_path):
    # the name is the file format's, not the module's: moving the module into lab/ must not make
    # every checkpoint saved before the move unreadable
    path = save_checkpoint(tmp_path / "run.npz", {"w": np.zeros(2, np.float32)})
    with np.load(path) as members:
        assert json.loads(str(members["meta"]))["format"] == "tinygrad_mnist.checkpoint/2"
