"""Reading the user's files: only regular files are opened (a FIFO, device, socket or folder would hang a reader or
fail obscurely), and sizes a file declares are checked before anything is allocated."""
from __future__ import annotations

import os
import stat
from typing import IO

import numpy as np

__all__ = ["file_kind", "check_regular", "open_regular", "read_npy"]


def file_kind(mode: int) -> str:
    """What a file of this mode is, in words (for a refusal)."""
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
        raise ValueError(f"{what} {path}: {file_kind(st.st_mode)}, not a regular file")
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
            raise ValueError(f"{what} {path}: {file_kind(st.st_mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


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
