"""A folder job's records: a report line per image (its identity, status and scores), the record each restored PNG
carries of itself, reading a report back (lines a kill or a full disk cut short skipped), resuming a job from what
is in its output folder, the output folder's checks, and the summary over every rank's report."""
from __future__ import annotations

import json
import os
from typing import List, NamedTuple, Optional, Tuple

from ..files import check_output_path, open_regular, recognise, refuse_foreign, same_folder, write_text
from .plan import Item

__all__ = ["SCORES", "item_record", "png_info", "record", "report_records", "resume", "Resumed", "check_output_folder",
           "summarize", "report_name"]


def report_name(rank: int, world: int) -> str:
    """The report file of a rank: ``report.jsonl`` for a single process, ``report.rank<r>.jsonl`` under torchrun."""
    return "report.jsonl" if world == 1 else f"report.rank{rank}.jsonl"


#: what a report line and a restored PNG record of an image's quality (DDRM's, and its task's baseline's)
SCORES = ("psnr", "ssim", "baseline", "psnr_baseline", "ssim_baseline")


def item_record(it: Item) -> dict:
    """The item's identity, as its report line and PNG begin."""
    return {"name": it.name, "task": it.task, "sigma_y": it.sigma_y, "seed": it.seed}


def png_info(rec: dict) -> dict:
    """What a restored PNG records of itself: the item and its scores."""
    return {k: rec[k] for k in ("name", "task", "sigma_y", "seed") + SCORES if k in rec}


def record(line: str) -> Optional[dict]:
    """One report line's record, or None for a line that holds none. A record that an earlier version appended
    onto a line a kill had cut (``{"name": "a", "si{"name": "b", ...}``) is found after the cut."""
    for start in (0, line.rfind(_RECORD_START)):
        if start < 0:
            break
        try:
            rec = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(rec, dict) and "name" in rec and "status" in rec:
            return rec
    return None


_RECORD_START = '{"name": '  # how every report line begins (json.dumps of a record whose first key is the name)


def report_records(path: str) -> List[dict]:
    """The records of a report this package wrote; lines a kill or a full disk cut short are skipped."""
    if not os.path.exists(path):
        return []
    with open_regular(path, "report", "r") as f:
        return [rec for rec in map(record, f) if rec is not None]


class Resumed(NamedTuple):
    """What a job's output folder already holds for its items: the items still to do, the report lines of images a
    killed run finished but did not report (``recovered``, with the scores their PNGs carry), how many items earlier
    runs finished, and the items whose output name holds a file the job did not write (with the reason)."""

    todo: List[Item]
    recovered: List[dict]
    finished: int
    foreign: List[Tuple[Item, str]]


def resume(out_dir: str, report_path: str, items: List[Item], rank: int = 0) -> Resumed:
    """Where a job stands, from its output folder. An existing output counts as finished only when this package
    wrote it for this item (its PNG's record says so); one whose report line a kill cut off is recovered with the
    scores stored in it. An existing file of that name that the job did not write is the user's: the item fails,
    the file stays."""
    reported = {rec.get("name") for rec in report_records(report_path) if rec.get("status") == "ok"}
    todo, recovered, foreign, finished = [], [], [], 0
    for it in items:
        path = os.path.join(out_dir, it.stem + ".png")
        if not os.path.lexists(path):
            todo.append(it)
            continue
        info = recognise(path, "png")
        if info is None or info.get("name") != it.name:
            foreign.append((it, f"{path} exists and was not written by ddrm-fast for this image; it is left as it "
                                f"is (move it away or choose another --output-dir)"))
            continue
        finished += 1
        if it.name not in reported:
            recovered.append({**item_record(it), "status": "ok", "recovered": True, "rank": rank,
                              **{k: info[k] for k in SCORES if k in info}})
    return Resumed(todo, recovered, finished, foreign)


def check_output_folder(out_dir: str, input_dir: Optional[str] = None, masks_dir: Optional[str] = None,
                        world: int = 1) -> None:
    """Refuse an output folder the job could damage or cannot write, before anything is decoded or sampled: one that
    is a file or lies below one, one that cannot be written, that is the input (or masks) folder, or that holds a
    report or summary this package did not write."""
    check_output_path(out_dir, "--output-dir")  # a file, below a file, or in a folder that cannot be written
    for flag, other in (("--input-dir", input_dir), ("--masks-dir", masks_dir)):
        if other is not None and os.path.isdir(other) and os.path.isdir(out_dir) and same_folder(out_dir, other):
            raise ValueError(f"--output-dir {out_dir} is the {flag} folder: the results would mix with the inputs; "
                             f"choose another folder")
    if not os.path.isdir(out_dir):
        return
    names = ["summary.json"] + [report_name(r, world) for r in range(world)]
    for name in names:
        refuse_foreign(os.path.join(out_dir, name), "report" if name.endswith(".jsonl") else "summary",
                       f"--output-dir {out_dir}: {name} exists and was not written by ddrm-fast; it is not touched "
                       f"(choose another folder)")


def summarize(out_dir: str, stats: List[dict], world: int) -> dict:
    """Merge the ranks' counts and reports into ``out_dir/summary.json``; returns the summary."""
    names, failed = {}, {}
    for r in range(world):
        path = os.path.join(out_dir, report_name(r, world))
        for rec in report_records(path):
            if rec.get("status") == "ok":
                names[rec["name"]] = rec
                failed.pop(rec["name"], None)
            else:
                failed[rec["name"]] = rec
    psnrs = [r["psnr"] for r in names.values() if "psnr" in r]
    scored = [r for r in names.values() if "psnr" in r and "psnr_baseline" in r]
    seconds = max(s["seconds"] for s in stats)
    done_now = sum(s["ok"] for s in stats)
    summary = {"images": len(names), "failures": len(failed), "failed": sorted(failed),
               "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None, "scored": len(psnrs),
               # DDRM and the classical baseline over the images scored with both (each line names its baseline)
               "mean_psnr_both": ({"ddrm": sum(r["psnr"] for r in scored) / len(scored),
                                   "baseline": sum(r["psnr_baseline"] for r in scored) / len(scored),
                                   "images": len(scored)} if scored else None),
               "restored_this_run": done_now, "seconds": seconds,
               "images_per_s": done_now / seconds if seconds > 0 else None,
               "sampler_s": sum(s["sampler_s"] for s in stats), "io_s": sum(s["io_s"] for s in stats),
               "load_s": sum(s["load_s"] for s in stats)}
    write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    return summary
