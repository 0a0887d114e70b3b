"""The user's files, handled safely: only regular files are opened, writes are atomic, the job's own temporaries are
recognisable beyond doubt, declared sizes are checked before anything is allocated, and an output folder is locked.

- :func:`open_regular` opens a file without blocking and refuses anything but a regular file (a FIFO, device, socket
  or folder would hang a reader or fail obscurely).
- :func:`atomic_write` writes through a temporary named ``.ddrm-fast-partial.<pid>.<token>.<check>`` in the target's
  folder and renames it. The name has a fixed length (any target name that fits the file system can be written) and
  no extension, so no output (always ``*.png``, ``*.json``, ...) can be named like one, and its last field is a
  checksum of the others, so a name picked by hand is not one either: :func:`remove_own_temporaries` removes only
  those.
- :func:`read_npy` reads a ``.npy`` array after checking its header against a size limit.
- :class:`FolderLock` is an advisory lock (``fcntl.lockf``) that keeps two jobs out of one output folder. Its file
  says it is ddrm-fast's; a ``.ddrm-fast.lock`` that does not is the user's, refused and never touched.
- :class:`LineLog` appends whole lines to a job's own JSON-lines report: a line a kill or a full disk cut short is
  cut off before the next is appended.
- :class:`DiskFull` is what every write here raises when the file system is full: not one bad file but a reason to
  stop, naming the folder.
- :func:`recognise` / :func:`is_own` answer, for every kind of file the package writes, whether a file is
  ddrm-fast's (``ownership.py``): the one place that decides whether a user's file may be touched.
"""
from .lock import LOCK_NAME, FolderBusy, FolderLock, is_own_lock
from .ownership import KINDS, PNG_KEY, is_own, png_record, recognise, refuse_foreign
from .reading import check_regular, file_kind, open_regular, read_npy
from .writing import (DiskFull, LineLog, atomic_write, check_output_path, is_disk_full, is_own_temporary, name_max,
                      remove_own_temporaries, same_folder, temporary_name, write_text)

__all__ = ["open_regular", "check_regular", "file_kind", "read_npy", "atomic_write", "is_own_temporary",
           "temporary_name", "remove_own_temporaries", "write_text", "DiskFull", "is_disk_full", "LineLog",
           "name_max", "check_output_path", "same_folder", "FolderLock", "FolderBusy", "is_own_lock", "LOCK_NAME",
           "recognise", "is_own", "refuse_foreign", "png_record", "PNG_KEY", "KINDS"]
