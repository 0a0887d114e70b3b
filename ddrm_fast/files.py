"""The user's files, handled safely: only regular files are opened, writes are atomic, the job's own temporaries are
recognisable beyond doubt, declared sizes are checked before anything is allocated, and an output folder is locked.

- :func:`open_regular` opens a file without blocking and refuses anything but a regular file (a FIFO, device, socket
  or folder would hang a reader or fail obscurely).
- :func:`atomic_write` writes through a temporary named ``.ddrm-fast-partial.<pid>.<token>.<name>`` in the target's
  folder and renames it; :func:`remove_own_temporaries` removes only names of exactly that form.
- :func:`read_npy` reads a ``.npy`` array after checking its header against a size limit.
- :class:`FolderLock` is an advisory lock (``fcntl.lockf``) that keeps two jobs out of one output folder.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from typing import IO, Callable, Optional

import numpy as np

__all__ = ["open_regular", "check_regular", "atomic_write", "is_own_temporary", "remove_own_temporaries",
           "read_npy", "FolderLock", "FolderBusy", "same_folder", "write_text", "LOCK_NAME"]

_TMP_PREFIX = ".ddrm-fast-partial."
_TMP_NAME = re.compile(r"^\.ddrm-fast-partial\.\d+\.[0-9a-f]{16}\..+$")
LOCK_NAME = ".ddrm-fast.lock"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_regular(path: str, what: str) -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed), or a ValueError naming ``what`` when it is missing or is not a
    regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path}: {_kind(st.st_mode)}, not a regular file")
    return st


def open_regular(path: str, what: str, mode: str = "rb") -> IO:
    """Open a regular file for reading. The file is opened non-blocking and checked with ``fstat`` on the open
    descriptor, so a FIFO (which would block ``open`` or ``read``) or a device is refused, race-free."""
    check_regular(path, what)  # the clear message for the common cases
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the stat and the open
            raise ValueError(f"{what} {path}: {_kind(st.st_mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


# --- atomic writes and the job's own temporaries ----------------------------------------------------------------------
def is_own_temporary(name: str) -> bool:
    """True for a file name :func:`atomic_write` makes, and only for those."""
    return bool(_TMP_NAME.match(name))


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` all or nothing: ``write(tmp)`` fills a temporary in the same folder, which is then renamed over
    ``path``. On any failure the temporary is removed and ``path`` is left as it was."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}.{secrets.token_hex(8)}.{name}")
    try:
        write(tmp)
        # the permissions of a file created by open(path, "w"), whatever the writer chose (safetensors: 0600)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: set it back at once
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing (:func:`atomic_write`)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def remove_own_temporaries(folder: str) -> int:
    """Remove the temporaries a killed job left in ``folder``: regular files named as :func:`atomic_write` names
    them, nothing else. Call it only while holding the folder's :class:`FolderLock`, so no running job's temporary
    is removed. Returns how many were removed."""
    n = 0
    if not os.path.isdir(folder):
        return 0
    for entry in os.scandir(folder):
        if is_own_temporary(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.remove(entry.path)
                n += 1
            except FileNotFoundError:
                pass
    return n


# --- .npy files: the header first ----------------------------------------------------------------------------------
def read_npy(path: str, what: str, max_elements: int) -> np.ndarray:
    """A real numeric array from a ``.npy`` file, as float32. The header's shape is checked against
    ``max_elements`` before the data is read, so a file that declares a huge array allocates nothing."""
    with open_regular(path, what) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, OSError, SyntaxError, TypeError) as exc:
            raise ValueError(f"{what} {path}: not an .npy file ({str(exc).splitlines()[0][:120]})") from None
        count = int(np.prod(shape, dtype=np.float64)) if len(shape) else 1
        if count > max_elements:
            raise ValueError(f"{what} {path}: declares shape {tuple(shape)} ({count} values), more than the "
                             f"{max_elements} the image can have")
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise ValueError(f"{what} {path}: dtype {dtype} is not a real number type")
        expected = count * dtype.itemsize
        data = f.read(expected + 1)
        if len(data) != expected:
            raise ValueError(f"{what} {path}: holds {len(data)} bytes of data, its header declares {expected}")
    a = np.frombuffer(data, dtype=dtype, count=count)
    a = a.reshape(shape, order="F" if fortran else "C")
    return np.array(a, dtype=np.float32, order="C")  # a writable copy


# --- the output folder's lock ----------------------------------------------------------------------------------------
class FolderBusy(ValueError):
    """Another process holds the folder's lock."""


class FolderLock:
    """An advisory, exclusive lock on ``folder``: a ``.ddrm-fast.lock`` file in it, locked with ``fcntl.lockf`` while
    held and removed on release.

    POSIX record locks belong to the process: forked DataLoader workers do not inherit them, and the kernel
    releases them when the process dies, so a SIGKILLed job never leaves the folder locked (only the empty file,
    which the next job takes over). Acquiring refuses at once (:class:`FolderBusy`) when another process holds it.
    Re-entrant within one process.
    """

    _held: dict = {}  # realpath -> [fd, depth], this process's locks

    def __init__(self, folder: str):
        self.folder = folder
        self.key: Optional[str] = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        key = os.path.realpath(self.folder)
        held = FolderLock._held.get(key)
        if held is None:
            FolderLock._held[key] = held = [self._lock(os.path.join(key, LOCK_NAME)), 0]
        held[1] += 1
        self.key = key

    def _lock(self, path: str) -> int:
        import fcntl

        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise ValueError(f"{path}: not a regular file")
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise FolderBusy(f"--output-dir {self.folder}: in use by another ddrm-fast job"
                                     f"{f' (pid {owner})' if owner else ''}; wait for it to finish") from None
                raise ValueError(f"--output-dir {self.folder}: cannot be locked ({exc.strerror})") from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the holder before us may have removed the file after we opened it: lock the one that is there
                now = os.stat(path, follow_symlinks=False)
                same = (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)
        raise ValueError(f"--output-dir {self.folder}: cannot be locked (its lock file keeps changing)")

    def release(self) -> None:
        if self.key is None:
            return
        held = FolderLock._held[self.key]
        held[1] -= 1
        if held[1] == 0:
            del FolderLock._held[self.key]
            try:  # removed while still locked, so no other job can be holding this very file
                os.remove(os.path.join(self.key, LOCK_NAME))
            except OSError:
                pass
            os.close(held[0])  # closing the descriptor releases the lock
        self.key = None


def _read_owner(fd: int) -> Optional[str]:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None


def same_folder(a: str, b: str) -> bool:
    """Whether two paths name one folder (through symlinks and ``..``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
