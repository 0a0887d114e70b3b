"""Restore a directory of images: per-image operators, resumable, sharded over torch.distributed ranks.

- ``manifest.py``: per-image settings from CSV or JSON; ``plan.py``: this rank's items and their batches;
- ``job.py``: the job's settings record (:class:`FolderJob`), the loader, sampling, writing, :func:`restore_dir`;
- ``report.py``: report lines, the PNGs' own records, resuming, the output folder's checks, the summary.


The job is planned from the file names alone (sorted, sharded ``names[rank::world]``), then streamed: a DataLoader
with worker processes decodes one batch of equal-size images at a time, and each batch is one ``ddrm_sample`` call
with per-sample masks, noise levels and random streams. Every image's randomness (its inpainting mask when drawn,
its measurement noise, the sampler's noise) comes from a generator seeded by the image's own seed, so its result
does not depend on batch size, neighbours, worker count or rank count.

Nothing is lost or written partially: a result is written under a temporary name and renamed; finished images are
skipped on rerun; each finished or failed image appends a line to the report as it happens. The output folder is the
user's: the job holds a lock on it (:class:`ddrm_fast.files.FolderLock`), overwrites only PNGs it wrote itself (they
carry a ``ddrm-fast`` text chunk) and removes only its own temporaries. A bad item (a file that is not a regular
file, unreadable, oversized, wrong mode, size not divisible, a mask or noise map of the wrong size, a bad manifest
entry, an existing output it did not write) is reported and skipped, whatever exception it raised. A batch that runs
out of GPU memory is split in halves and retried, down to single images.
"""
from .job import FolderJob, Job, clean_partial, restore_dir
from .manifest import default_seed, read_manifest
from .plan import IMAGE_EXTENSIONS, Item, plan
from .report import check_output_folder, summarize

__all__ = ["FolderJob", "Job", "Item", "plan", "read_manifest", "restore_dir", "default_seed", "check_output_folder",
           "clean_partial", "summarize", "IMAGE_EXTENSIONS"]
