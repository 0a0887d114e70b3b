"""ddrm_fast.files: only regular files are opened, writes are all or nothing, only the job's own temporaries are
removed, .npy headers are checked before data is read, and an output folder is locked against a second process."""
import os
import subprocess
import sys

import numpy as np
import pytest

import torch

from ddrm_fast import files


def test_open_regular_refuses_fifos_folders_and_devices_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")  # opening a FIFO for reading blocks until a writer comes: never here
    (tmp_path / "folder.png").mkdir()
    for path, kind in ((tmp_path / "fifo.png", "a FIFO"), (tmp_path / "folder.png", "a folder"),
                       ("/dev/null", "a device"), (tmp_path / "missing.png", "no such file")):
        with pytest.raises(ValueError, match=kind):
            files.open_regular(str(path), "image")
    (tmp_path / "ok.txt").write_text("hello")
    os.symlink(tmp_path / "ok.txt", tmp_path / "link.txt")  # a link to a regular file is that file
    with files.open_regular(str(tmp_path / "link.txt"), "file", "r") as f:
        assert f.read() == "hello"


def test_atomic_write_leaves_the_old_file_or_the_new_one_never_a_part(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of it")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        files.atomic_write(str(target), broken)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.png"]  # the temporary went too
    files.atomic_write(str(tmp_path / "b.png"), lambda tmp: open(tmp, "wb").write(b"new"))
    assert (tmp_path / "b.png").read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]


def test_only_the_jobs_own_temporaries_are_removed(tmp_path):
    names = {}

    def keep_name(tmp):
        names["tmp"] = os.path.basename(tmp)
        raise KeyboardInterrupt  # stands for a kill: the temporary stays behind only if we re-create it below

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(str(tmp_path / "cat.png"), keep_name)
    (tmp_path / names["tmp"]).write_bytes(b"left by a killed job")
    users = ["thesis.tmp.docx", "template.tmpl", "x.tmp", ".ddrm-fast-partial.notes", "cat.png.tmp123.png"]
    for n in users:
        (tmp_path / n).write_text("the user's")
    (tmp_path / "cache.tmp").mkdir()
    (tmp_path / ".ddrm-fast-partial.1.0123456789abcdef.dir").mkdir()  # our pattern, but a folder: not ours
    assert files.is_own_temporary(names["tmp"]) and not any(files.is_own_temporary(n) for n in users)
    assert files.remove_own_temporaries(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(users + ["cache.tmp", ".ddrm-fast-partial.1.0123456789abcdef.dir"])


def _npy_header_only(path, shape):
    """An .npy file whose header declares ``shape`` and that holds no data at all."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})


def test_read_npy_checks_the_declared_shape_before_reading(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(6, dtype=np.float64).reshape(2, 3))
    a = files.read_npy(str(tmp_path / "ok.npy"), "noise map", max_elements=6)
    assert a.dtype == np.float32 and a.flags.writeable and a.tolist() == [[0, 1, 2], [3, 4, 5]]
    _npy_header_only(tmp_path / "huge.npy", (100000, 100000))
    with pytest.raises(ValueError, match=r"declares shape \(100000, 100000\)"):
        files.read_npy(str(tmp_path / "huge.npy"), "noise map", max_elements=10**6)
    _npy_header_only(tmp_path / "short.npy", (2, 3))  # the header promises data the file does not hold
    with pytest.raises(ValueError, match="holds 0 bytes of data, its header declares 24"):
        files.read_npy(str(tmp_path / "short.npy"), "noise map", max_elements=6)
    np.savez(tmp_path / "z.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an .npy file"):
        files.read_npy(str(tmp_path / "z.npz"), "noise map", max_elements=6)
    np.save(tmp_path / "c.npy", np.zeros(3, np.complex64))
    with pytest.raises(ValueError, match="not a real number type"):
        files.read_npy(str(tmp_path / "c.npy"), "noise map", max_elements=6)
    np.save(tmp_path / "o.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a real number type"):
        files.read_npy(str(tmp_path / "o.npy"), "noise map", max_elements=6)


_HOLD = """
import sys, time
from ddrm_fast.files import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_folder_lock_keeps_a_second_process_out_and_dies_with_its_holder(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(files.FolderBusy, match=rf"in use by another ddrm-fast job \(pid {holder.pid}\)"):
            files.FolderLock(str(out)).acquire()
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, the file stays
        holder.wait()
    assert os.listdir(out) == [files.LOCK_NAME]
    with files.FolderLock(str(out)):
        with files.FolderLock(str(tmp_path / "out" / ".." / "out")):  # re-entrant in one process
            pass
        assert os.listdir(out) == [files.LOCK_NAME]
    assert os.listdir(out) == []  # removed on release


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    files.atomic_write(str(tmp_path / "m.safetensors"), lambda tmp: save_file({"a": torch.zeros(1)}, tmp))
    assert os.stat(tmp_path / "m.safetensors").st_mode == os.stat(plain).st_mode  # safetensors alone gives 0600
