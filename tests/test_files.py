"""ddrm_fast.files: only regular files are opened, writes are all or nothing, only the job's own temporaries are
removed, .npy headers are checked before data is read, an output folder is locked against a second process, and every
kind of file the package writes is told from the user's (the one set of ownership tests)."""
import json
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


@pytest.mark.parametrize("error,raised", [(OSError(5, "Input/output error"), "Input/output error"),
                                          (OSError(28, "No space left on device"),
                                           r"no space left on .*: could not write a.png; free space and run again"),
                                          (RuntimeError("Os { code: 28, kind: StorageFull, message: \"No space left "
                                                        "on device\" }"), "no space left on")])
def test_atomic_write_leaves_the_old_file_or_the_new_one_never_a_part(tmp_path, error, raised):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of it")
        raise error

    with pytest.raises(type(error) if "no space" not in raised else files.DiskFull, match=raised) as info:
        files.atomic_write(str(target), broken)
    if "no space" in raised:  # a full disk is not this file's fault: it names the folder, so a job can stop
        assert info.value.folder == str(tmp_path)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.png"]  # the temporary went too
    files.atomic_write(str(tmp_path / "b.png"), lambda tmp: open(tmp, "wb").write(b"new"))
    assert (tmp_path / "b.png").read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]


def _temporary_name(tmp_path):
    """The name of a temporary atomic_write makes (the write is interrupted, as by a kill)."""
    names = []

    def interrupted(tmp):
        names.append(os.path.basename(tmp))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(str(tmp_path / "cat.png"), interrupted)
    return names[0]


def test_only_the_jobs_own_temporaries_are_removed(tmp_path):
    left, folder = _temporary_name(tmp_path), _temporary_name(tmp_path)
    (tmp_path / left).write_bytes(b"left by a killed job")
    (tmp_path / folder).mkdir()  # our name, but a folder: not ours
    *head, check = left.split(".")
    users = ["thesis.tmp.docx", "template.tmpl", "x.tmp", ".ddrm-fast-partial.notes", "cat.png.tmp123.png",
             # an output named like the temporaries of earlier versions (an input of that name gives one)
             ".ddrm-fast-partial.1.0123456789abcdef.cat.png",
             # today's pattern with a checksum that does not fit, and a temporary's name with an extension
             ".".join(head + ["0" * 8 if check != "0" * 8 else "1" * 8]), left + ".png"]
    for n in users:
        (tmp_path / n).write_text("the user's")
    (tmp_path / "cache.tmp").mkdir()
    assert files.is_own_temporary(left) and not any(files.is_own_temporary(n) for n in users)
    assert files.remove_own_temporaries(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(users + ["cache.tmp", folder])


def test_temporary_names_fit_whatever_the_target_is_named(tmp_path):
    """A temporary's name has a fixed length, so every name the file system takes can be written."""
    longest = "n" * 251 + ".png"  # 255 bytes: the usual limit
    seen = []
    files.atomic_write(str(tmp_path / longest), lambda tmp: (seen.append(os.path.basename(tmp)),
                                                             open(tmp, "wb").write(b"ok")))
    assert (tmp_path / longest).read_bytes() == b"ok" and os.listdir(tmp_path) == [longest]
    assert len(seen[0]) < 64 and files.is_own_temporary(seen[0])


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


@pytest.mark.parametrize("kind", ["notes", "empty", "a pid alone", "a symlink", "a folder", "magic and more"])
def test_a_lock_file_that_is_not_ddrm_fasts_is_refused_and_never_touched(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / files.LOCK_NAME
    if kind == "notes":
        lock.write_text("notes\n")
    elif kind == "empty":
        lock.write_bytes(b"")
    elif kind == "a pid alone":  # what earlier versions wrote: too little to tell from a user's file
        lock.write_text("123\n")
    elif kind == "a symlink":
        (tmp_path / "mine.txt").write_text("mine")
        os.symlink(tmp_path / "mine.txt", lock)
    elif kind == "a folder":
        lock.mkdir()
        (lock / "inside").write_text("mine")
    else:  # begins like ours but goes on: a user's document that quotes it
        lock.write_bytes(b"ddrm-fast lock: a ddrm-fast job uses this output folder\n" + b"x" * 1000)
    before = {p: (p.read_bytes() if p.is_file() else None) for p in sorted(tmp_path.rglob("*"))}
    with pytest.raises(ValueError, match=r"\.ddrm-fast\.lock exists and is not ddrm-fast's lock.*it is not touched"):
        files.FolderLock(str(out)).acquire()
    assert {p: (p.read_bytes() if p.is_file() else None) for p in sorted(tmp_path.rglob("*"))} == before


def test_a_lock_a_killed_job_left_is_taken_over_and_folders_the_lock_made_go_with_it(tmp_path):
    out = tmp_path / "a" / "b"
    lock = files.FolderLock(str(out))
    lock.acquire()
    left = (out / files.LOCK_NAME).read_bytes()  # what a SIGKILL leaves: the file, no process holding it
    assert left.startswith(b"ddrm-fast lock") and f"pid {os.getpid()}".encode() in left
    lock.release()
    assert not (tmp_path / "a").exists()  # made for a job that wrote nothing: removed, both levels
    out.mkdir(parents=True)
    (out / files.LOCK_NAME).write_bytes(left.replace(str(os.getpid()).encode(), b"1"))
    with files.FolderLock(str(out)):
        assert (out / files.LOCK_NAME).read_bytes() == left  # ours now
    assert os.listdir(out) == []  # the folder was there before: it stays


def test_a_report_keeps_whole_lines_only(tmp_path, monkeypatch):
    path = tmp_path / "report.jsonl"
    for before, after in ((b'{"a": 1}\n{"name": "x", "sig', b'{"a": 1}\n{"b": 2}\n'),
                          (b'{"name": "x"', b'{"b": 2}\n'), (b"", b'{"b": 2}\n'),
                          (b'{"a": 1}\n' * 1000 + b'{"c"', b'{"a": 1}\n' * 1000 + b'{"b": 2}\n')):
        path.write_bytes(before)
        with files.LineLog(str(path)) as log:
            log.write('{"b": 2}')
        assert path.read_bytes() == after
    real_write = os.write

    def full_after_half(fd, data):  # the disk fills up in the middle of a line
        if fd == log.fd:
            real_write(fd, bytes(data[:5]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    log = files.LineLog(str(path))
    monkeypatch.setattr(os, "write", full_after_half)
    with pytest.raises(files.DiskFull, match="no space left on .*: could not write report.jsonl"):
        log.write('{"d": 4}')
    monkeypatch.setattr(os, "write", real_write)
    log.close()
    assert path.read_bytes() == after  # nothing of the line that did not fit


def test_output_paths_below_a_file_are_refused(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ValueError, match=r"--output-dir .*afile/sub/deeper: .*afile is a file, not a folder"):
        files.check_output_path(str(tmp_path / "afile" / "sub" / "deeper"), "--output-dir")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        files.check_output_path(str(tmp_path / "afile"), "-o")
    files.check_output_path(str(tmp_path / "new" / "sub"), "-o")  # to be created: fine


# --- ownership: one recogniser per kind of file the package writes -------------------------------------------------
def _own_files(tmp_path):
    """kind -> (files ddrm-fast writes of that kind, made by its own writers where they are cheap; the user's files
    of the same names that must not be taken for them)."""
    from PIL import Image

    from ddrm_fast.imageio import write_png
    from ddrm_fast.models import ADMUNet, save

    d = tmp_path / "made"
    d.mkdir()

    def text(name, content):
        (d / name).write_text(content)
        return d / name

    write_png(torch.zeros(3, 4, 4), str(d / "ours.png"), {"name": "cat.png"})
    Image.new("RGB", (4, 4)).save(d / "plain.png")
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("ddrm-fast", "not json")
    Image.new("RGB", (4, 4)).save(d / "fake_chunk.png", pnginfo=meta)
    Image.new("RGB", (4, 4)).save(d / "photo.jpg")
    with files.LineLog(str(d / "report.jsonl")) as log:
        log.write(json.dumps({"name": "cat.png", "task": "deno", "status": "ok"}))
    torch.manual_seed(0)
    save(ADMUNet(dict(model_channels=32, num_res_blocks=1, channel_mult=(1,), attention_ds=())), d / "m.safetensors",
         torch.linspace(1e-4, 0.02, 10))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(d / "foreign.safetensors"))
    torch.save({"model": {}, "ema": {}, "opt": {}, "step": 3}, d / "state.pt")
    torch.save({"weights": torch.zeros(2)}, d / "other.pt")
    lock_dir = tmp_path / "locked"
    with files.FolderLock(str(lock_dir)):
        (d / "ddrm.lock").write_bytes((lock_dir / files.LOCK_NAME).read_bytes())
    tmp = _temporary_name(d)
    (d / tmp).write_bytes(b"half")
    os.mkfifo(d / "fifo")
    (d / "folder").mkdir()
    return {
        "png": ([d / "ours.png"], [d / "plain.png", d / "fake_chunk.png", d / "photo.jpg", d / "fifo", d / "folder"]),
        "report": ([d / "report.jsonl", text("empty.jsonl", ""), text("torn.jsonl", '{"name": "x", "sig'),
                    text("glued.jsonl", '{"name": "x", "si{"name": "y", "status": "ok"}\n')],
                   [text("notes.jsonl", "my notes\n"), text("obj.jsonl", '{"a": 1}\n'), text("blank.jsonl", "\n"),
                    d / "fifo", d / "folder"]),
        "summary": ([text("summary.json", json.dumps({"images": 2, "failures": 0, "restored_this_run": 2}))],
                    [text("other.json", '{"images": 2}'), text("list.json", "[1]"), d / "report.jsonl"]),
        "training log": ([text("log.jsonl", '{"step": 50, "loss": 0.1}\n'), text("torn_log.jsonl", '{"step": 5'),
                          text("empty_log.jsonl", "")],
                         [text("mine.jsonl", '{"epoch": 1}\n'), d / "report.jsonl"]),
        "training state": ([d / "state.pt"], [d / "other.pt", text("junk.pt", "junk"), d / "m.safetensors"]),
        "model": ([d / "m.safetensors"], [d / "foreign.safetensors", d / "state.pt", d / "fifo"]),
        "bench csv": ([text("bench.csv", "batch,mode,images_per_s\n1,fused,3.0\n")],
                      [text("my.csv", "a,b\n"), d / "ours.png"]),
        "bench md": ([text("bench.md", "| batch | mode | images/s |\n|---|---|---|\n")],
                     [text("notes.md", "# notes\n")]),
        "lock": ([d / "ddrm.lock"], [text("notes.lock", "notes\n"), text("pid.lock", "123\n"), text("e.lock", "")]),
        "temporary": ([d / tmp], [text(".ddrm-fast-partial.1.0123456789abcdef.cat.png", "x"), d / "folder"]),
    }


def test_every_kind_of_file_the_package_writes_is_told_from_the_users(tmp_path):
    cases = _own_files(tmp_path)
    assert sorted(cases) == sorted(files.KINDS)  # every kind has its cases here
    for kind, (ours, theirs) in cases.items():
        for path in ours:
            assert files.is_own(str(path), kind), (kind, path)
        for path in theirs:
            assert not files.is_own(str(path), kind), (kind, path)
        assert not files.is_own(str(tmp_path / "missing"), kind)
    assert files.recognise(str(tmp_path / "made" / "ours.png"), "png") == {"name": "cat.png"}
    assert files.recognise(str(tmp_path / "made" / "state.pt"), "training state")["step"] == 3
    with pytest.raises(ValueError, match="kind must be one of"):
        files.is_own(str(tmp_path), "spreadsheet")


def test_refuse_foreign_names_the_file_and_leaves_it(tmp_path):
    (tmp_path / "report.jsonl").write_text("my notes\n")
    with pytest.raises(ValueError, match="^report.jsonl is mine$"):
        files.refuse_foreign(str(tmp_path / "report.jsonl"), "report", "report.jsonl is mine")
    files.refuse_foreign(str(tmp_path / "absent.jsonl"), "report", "never raised")
    assert (tmp_path / "report.jsonl").read_text() == "my notes\n"
