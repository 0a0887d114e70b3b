"""Writing in the user's folders: all or nothing, through temporaries recognisable beyond doubt; whole lines in a
job's reports; a full disk named as such; output paths checked before any work.

A temporary is named ``.ddrm-fast-partial.<pid>.<token>.<check>``: a fixed length (any target name that fits the file
system can be written), no extension (no output, always ``*.png``, ``*.json``, ..., can be named like one) and a last
field that is a checksum of the others (a name picked by hand is not one either).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from typing import Callable, Optional

from .reading import file_kind

__all__ = ["DiskFull", "is_disk_full", "temporary_name", "is_own_temporary", "atomic_write", "write_text",
           "remove_own_temporaries", "LineLog", "name_max", "check_output_path", "same_folder"]

_TMP_PREFIX = ".ddrm-fast-partial."
_TMP_NAME = re.compile(r"^\.ddrm-fast-partial\.(\d{1,10})\.([0-9a-f]{16})\.([0-9a-f]{8})$")


class DiskFull(OSError):
    """The file system holding ``folder`` is full (or the user's quota is spent): no later write there can succeed,
    so a job stops at once rather than failing every item that follows."""

    def __init__(self, folder: str, what: str = "", done: Optional[int] = None, total: Optional[int] = None):
        super().__init__(errno.ENOSPC, f"no space left on {folder}" + (f": {what}" if what else ""))
        self.folder, self.what = folder, what
        self.done, self.total = done, total  # a job's images finished (earlier runs included) and all of them

    def __reduce__(self):  # torch.distributed passes it between ranks
        return DiskFull, (self.folder, self.what, self.done, self.total)

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system is full: ENOSPC or EDQUOT, also from writers (safetensors) that raise
    their own exception types with the system's message."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left on device" in text or "disk quota exceeded" in text


def _check(pid: str, token: str) -> str:
    return hashlib.sha256(f"{_TMP_PREFIX}{pid}.{token}".encode()).hexdigest()[:8]


def temporary_name() -> str:
    """A fresh name for a temporary of this process (see the module's docstring)."""
    pid, token = str(os.getpid()), secrets.token_hex(8)
    return f"{_TMP_PREFIX}{pid}.{token}.{_check(pid, token)}"


def is_own_temporary(name: str) -> bool:
    """True for a file name :func:`atomic_write` makes, and only for those: the pattern (which no output name can
    match: outputs have extensions) and its checksum."""
    m = _TMP_NAME.match(name)
    return bool(m) and m.group(3) == _check(m.group(1), m.group(2))


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` all or nothing: ``write(tmp)`` fills a temporary in the same folder, which is then renamed over
    ``path``. On any failure the temporary is removed and ``path`` is left as it was; a full file system raises
    :class:`DiskFull` naming the folder. ``write`` must name the format itself: the temporary has no extension."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, temporary_name())
    try:
        write(tmp)
        # the permissions of a file created by open(path, "w"), whatever the writer chose (safetensors: 0600)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except Exception as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(os.path.dirname(path) or ".", f"could not write {name}; free space and run again") from None
        raise
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


# --- a job's report: whole lines only ------------------------------------------------------------------------------
class LineLog:
    """Append-only lines to a job's own log file (its JSON-lines report), each written whole or not at all.

    A last line without its newline is what a killed or disk-full writer of this log left: it is cut off on opening,
    so the next line never joins it. Writes are unbuffered, and a write the file system cannot take is undone and
    raises :class:`DiskFull`. Open only a file the caller has recognised as its own.
    """

    def __init__(self, path: str):
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise self._error(exc) from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{path}: {file_kind(st.st_mode)}, not a regular file")
            os.set_blocking(self.fd, True)
            self._cut_torn_tail(st.st_size)
        except BaseException:
            os.close(self.fd)
            raise

    def _error(self, exc: OSError) -> OSError:
        folder = os.path.dirname(os.path.abspath(self.path))
        return DiskFull(folder, f"could not write {os.path.basename(self.path)}") if is_disk_full(exc) else exc

    def _cut_torn_tail(self, size: int) -> None:
        end = size
        while end > 0:
            chunk = os.pread(self.fd, min(4096, end), end - min(4096, end))
            if end == size and chunk.endswith(b"\n"):
                return  # whole lines only
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = end - len(chunk) + cut + 1
                break
            end -= len(chunk)
        os.ftruncate(self.fd, end)

    def write(self, line: str) -> None:
        """Append ``line`` and its newline; on a full disk nothing of it stays and :class:`DiskFull` is raised."""
        data = line.encode() + b"\n"
        start = os.fstat(self.fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass  # the torn line is cut on the next opening
            raise self._error(exc) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "LineLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- output paths ----------------------------------------------------------------------------------------------------
def name_max(folder: str) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing parent) takes."""
    path = os.path.abspath(folder)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return int(os.pathconf(path, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_output_path(folder: str, flag: str) -> None:
    """Refuse, before any work, an output folder that cannot be: one below a file, one that is a file, one in a
    folder that cannot be written (ValueError naming ``flag``)."""
    path = os.path.abspath(folder)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {folder}: exists and is not a folder")
    parent = path
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: {parent} cannot be written")


def same_folder(a: str, b: str) -> bool:
    """Whether two paths name one folder (through symlinks and ``..``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
