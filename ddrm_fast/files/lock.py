"""The output folder's lock: one job per folder, and a ``.ddrm-fast.lock`` that is not ddrm-fast's is the user's."""
from __future__ import annotations

import errno
import os
import re
import stat
from typing import Optional

from .reading import file_kind
from .writing import DiskFull, check_output_path, is_disk_full, temporary_name

__all__ = ["LOCK_NAME", "FolderLock", "FolderBusy", "is_own_lock"]

LOCK_NAME = ".ddrm-fast.lock"
#: the first line of every lock file ddrm-fast writes: what it recognises its own lock by
_LOCK_MAGIC = b"ddrm-fast lock: a ddrm-fast job uses this output folder\n"
_LOCK_MAX = 256  # bytes: a lock file is its magic line and a pid


class FolderBusy(ValueError):
    """Another process holds the folder's lock."""


def _lock_text() -> bytes:
    return _LOCK_MAGIC + f"pid {os.getpid()}\n".encode()


def is_own_lock(text: bytes) -> bool:
    """Whether a lock file's contents are ddrm-fast's: its magic line, then at most a pid line."""
    return text.startswith(_LOCK_MAGIC) and len(text) <= _LOCK_MAX


class FolderLock:
    """An advisory, exclusive lock on ``folder``: a ``.ddrm-fast.lock`` file in it, locked with ``fcntl.lockf`` while
    held and removed on release.

    POSIX record locks belong to the process: forked DataLoader workers do not inherit them, and the kernel
    releases them when the process dies, so a SIGKILLed job never leaves the folder locked (only its lock file,
    which the next job takes over). The file is created whole (written under a temporary name, then linked into
    place), so it always begins with ddrm-fast's magic line; a ``.ddrm-fast.lock`` that does not is the user's file:
    acquiring refuses the folder (a ValueError) and leaves it as it is. Acquiring refuses at once
    (:class:`FolderBusy`) when another process holds the lock. Re-entrant within one process.
    """

    _held: dict = {}  # realpath -> [fd, depth, folders it created], this process's locks

    def __init__(self, folder: str):
        self.folder = folder
        self.key: Optional[str] = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        check_output_path(self.folder, "--output-dir")
        created = _missing_folders(self.folder)
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.folder, "could not create it") from None
            raise ValueError(f"--output-dir {self.folder}: cannot be created ({exc.strerror})") from None
        key = os.path.realpath(self.folder)
        held = FolderLock._held.get(key)
        if held is None:
            try:
                fd = self._lock(os.path.join(key, LOCK_NAME))
            except BaseException:
                _remove_empty(created)
                raise
            FolderLock._held[key] = held = [fd, 0, created]
        held[1] += 1
        self.key = key

    def _lock(self, path: str) -> int:
        import fcntl

        for _ in range(100):
            fd = self._open(path)
            if fd is None:  # created or removed by another job meanwhile: look again
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise FolderBusy(f"--output-dir {self.folder}: in use by another ddrm-fast job"
                                     f"{f' (pid {owner})' if owner else ''}; wait for it to finish") from None
                raise ValueError(f"--output-dir {self.folder}: cannot be locked ({exc.strerror})") from None
            if _same_file(fd, path):  # the holder before us may have removed it after we opened it
                try:  # our pid, written over the old one in place: the file is never without its magic line
                    text = _lock_text()
                    os.pwrite(fd, text, 0)
                    os.ftruncate(fd, len(text))
                except OSError as exc:
                    os.close(fd)
                    raise self._disk_full() if is_disk_full(exc) else exc
                return fd
            os.close(fd)
        raise ValueError(f"--output-dir {self.folder}: cannot be locked (its lock file keeps changing)")

    def _open(self, path: str) -> Optional[int]:
        """A descriptor of the folder's lock file, ddrm-fast's own (created if missing); None when it changed under
        us. A file of that name that is not ddrm-fast's is refused and not touched."""
        flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return self._create(path)
        except OSError as exc:  # a symlink (ELOOP), a folder (EISDIR), no permission
            raise self._not_ours(exc.strerror) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._not_ours(file_kind(st.st_mode))
            if not is_own_lock(os.pread(fd, _LOCK_MAX + 1, 0)):
                raise self._not_ours("not written by ddrm-fast")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _create(self, path: str) -> Optional[int]:
        """Put a complete lock file in place: written under a temporary name and hard-linked, which fails if a file
        of that name appeared meanwhile (file systems without hard links: created exclusively, then written)."""
        folder = os.path.dirname(path)
        tmp = os.path.join(folder, temporary_name())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, _lock_text())
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
                except FileExistsError:
                    return None
                with os.fdopen(fd, "wb") as f:
                    f.write(_lock_text())
        except OSError as exc:
            if is_disk_full(exc):
                raise self._disk_full() from None
            raise ValueError(f"--output-dir {self.folder}: cannot be written ({exc.strerror})") from None
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
        return None  # open what is there now, checked like any lock file

    def _disk_full(self) -> DiskFull:
        return DiskFull(self.folder, "could not write its lock file; free space and run again")

    def _not_ours(self, why: str) -> ValueError:
        return ValueError(f"--output-dir {self.folder}: {LOCK_NAME} exists and is not ddrm-fast's lock ({why}); "
                          f"it is not touched (move it away or choose another folder)")

    def release(self) -> None:
        if self.key is None:
            return
        held = FolderLock._held[self.key]
        held[1] -= 1
        if held[1] == 0:
            del FolderLock._held[self.key]
            path = os.path.join(self.key, LOCK_NAME)
            try:  # removed while still locked, and only the very file we locked: no other job can hold it
                if _same_file(held[0], path):
                    os.remove(path)
            except OSError:
                pass
            os.close(held[0])  # closing the descriptor releases the lock
            _remove_empty(held[2])  # folders the lock made for a job that wrote nothing
        self.key = None


def _missing_folders(folder: str) -> list:
    """The folders ``os.makedirs(folder)`` would create, deepest first."""
    out, path = [], os.path.abspath(folder)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        out.append(path)
        path = os.path.dirname(path)
    return out


def _remove_empty(folders: list) -> None:
    for path in folders:  # deepest first; a folder someone put a file in stays
        try:
            os.rmdir(path)
        except OSError:
            return


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _read_owner(fd: int) -> Optional[str]:
    try:
        text = os.pread(fd, _LOCK_MAX, 0)
    except OSError:
        return None
    m = re.match(rb"pid (\d+)\n", text[len(_LOCK_MAGIC):])
    return m.group(1).decode() if is_own_lock(text) and m else None
