"""compression.files: the one safe writer and the bounded reader."""

import os

import pytest

from compression.errors import CompressionError
from compression.files import read_regular, remove_stale_temporaries, write_atomic


def test_write_atomic_writes_and_refuses_to_clobber(tmp_path):
    path = tmp_path / "out.gcz"
    write_atomic(path, b"one")
    assert path.read_bytes() == b"one"
    with pytest.raises(FileExistsError, match="--force"):
        write_atomic(path, b"two")
    assert path.read_bytes() == b"one"
    write_atomic(path, "two", overwrite=True)  # str is written as UTF-8
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["out.gcz"]  # no temporary left behind


def test_write_atomic_never_writes_through_a_symlink(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me")
    link = tmp_path / "out.gcz"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_atomic(link, b"new")
    write_atomic(link, b"new", overwrite=True)  # replaces the link, not its target
    assert target.read_bytes() == b"keep me"
    assert not link.is_symlink() and link.read_bytes() == b"new"
    dangling = tmp_path / "dangling.gcz"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_atomic(dangling, b"x")
    assert not (tmp_path / "nowhere").exists()


def test_a_users_partial_file_is_left_alone(tmp_path):
    # The old writer used a fixed "photo.gcz.partial" name and deleted it.
    mine = tmp_path / "photo.gcz.partial"
    mine.write_bytes(b"my own file")
    write_atomic(tmp_path / "photo.gcz", b"data")
    assert mine.read_bytes() == b"my own file"


def test_write_failures_are_clean_and_leave_nothing(tmp_path):
    with pytest.raises(CompressionError, match="is a directory"):
        write_atomic(tmp_path, b"x", overwrite=True)
    with pytest.raises(CompressionError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "out.gcz", b"x")

    # An interrupt while writing: the temporary file is removed.
    import compression.files as files

    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt

    files.os.fsync = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            write_atomic(tmp_path / "out.gcz", b"data")
    finally:
        files.os.fsync = real_fsync
    assert os.listdir(tmp_path) == []


def test_read_regular_refuses_fifos_devices_directories_and_oversize(tmp_path):
    fifo = tmp_path / "x.gcz"
    os.mkfifo(fifo)
    with pytest.raises(CompressionError, match="FIFO"):  # and does not block
        read_regular(fifo, 100)
    with pytest.raises(CompressionError, match="device"):
        read_regular("/dev/zero", 100)
    with pytest.raises(CompressionError, match="directory"):
        read_regular(tmp_path, 100)
    big = tmp_path / "big"
    big.write_bytes(bytes(101))
    with pytest.raises(CompressionError, match="100 bytes"):
        read_regular(big, 100)
    assert read_regular(big, 101) == bytes(101)
    with pytest.raises(CompressionError, match="No such file"):
        read_regular(tmp_path / "missing", 100)


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / "ckpt-5.data-00000-of-00001.tempstate123").write_bytes(b"x")
    (tmp_path / ".config.json.abcd.tmp").write_bytes(b"x")
    (tmp_path / "ckpt-5.index").write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path, ("*.tempstate*", ".*.tmp"))
    assert sorted(removed) == [".config.json.abcd.tmp", "ckpt-5.data-00000-of-00001.tempstate123"]
    assert os.listdir(tmp_path) == ["ckpt-5.index"]
