"""A broad probe of bad input: every kind of bad file in every file slot of every command.

Where ``Testing/bad_input.py`` is a catalogue of chosen cases with their expected messages, this
crosses kinds of bad files (missing, empty, a folder, a named pipe, text or a truncated gzip under
an image's name, NaN voxels, a zero voxel size, a name with spaces and accents) with the file
slots of the commands, and an existing file of the user's with each command's outputs. Each run
is a child ``pasta`` process in a fresh folder. A finding is a run that

- ends with a traceback or an exit code other than 0 or 2, or prints more than one ``error:`` line;
- exits 2 but wrote an output, left staging files behind, or changed one of the user's files;
- exits 0 on a file that cannot be a CT (the run said nothing was wrong with bad input).

An existing output is fine to run on only where the user's files stay as they were (an output
folder keeps files that are not the command's own). Cohorts (``pasta batch``) are left out: they
record each case's failure and go on, which ``Testing/test_batch.py`` checks.

Run: ``PYTHONPATH=PastaSlicer:Testing python Utilities/probe_bad_input.py`` (a few minutes;
``--only segment`` for one command). It prints one line per finding and a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "PastaSlicer"), str(ROOT / "Testing")]

import numpy as np  # noqa: E402
from bad_input import ct_array, write_ct  # noqa: E402

# Commands with their slots: {ct} and {seg} are inputs the probe replaces; {out}/{outdir} outputs.
COMMANDS = {
    "standardize": ["standardize", "{ct}", "{out}.nii.gz"],
    "segment": ["segment", "{ct}", "--out", "{out}.nii.gz", "--region", "body"],
    "report": ["report", "{ct}", "{seg}", "--out-dir", "{outdir}", "--formats", "json"],
    "synth": [
        "synth", "{ct}", "--box-ijk", "4,4,4,20,18,16", "--attributes", "10 mm round", "--lesion-type", "lung_nodule",
        "--seed", "1", "--out-image", "{out}.nii.gz", "--out-mask", "{out}_mask.nii.gz", "--out-report", "{out}.json",
    ],
    "synth --labels": [
        "synth", "ct.nii.gz", "--box-ijk", "4,4,4,20,18,16", "--attributes", "10 mm round", "--lesion-type", "lung_nodule",
        "--seed", "1", "--out-image", "{out}.nii.gz", "--out-mask", "{out}_mask.nii.gz", "--out-report", "{out}.json",
        "--labels", "{seg}",
    ],
    "features": ["features", "{ct}", "--mask", "{seg}", "--crop", "lesion", "--model", str(ROOT / "Resources" / "models" / "pasta-lung-default"), "--out", "{out}.csv"],
    "finetune": ["finetune", "--images", "{ct}", "--labels", "{seg}", "--out", "{outdir}", "--steps", "1"],
    "pretrain": ["pretrain", "--method", "volf", "--images", "{ct}", "--out", "{outdir}", "--steps", "1"],
    "models import": ["models", "--store", "store", "import", "{ct}", "--name", "probe"],
    "patches features": ["patches", "features", "{ct}", "--encoder", "enc.pt", "--out", "{out}.csv"],
}  # fmt: skip

GOOD_CT, GOOD_SEG = "ct.nii.gz", "seg.nii.gz"


def _bad_files(folder: Path) -> dict:
    """name of the kind -> a path in ``folder`` (relative) holding that kind of bad file."""
    import nibabel as nib

    kinds = {"missing": "nothere.nii.gz"}
    (folder / "empty.nii.gz").write_bytes(b"")
    kinds["empty"] = "empty.nii.gz"
    (folder / "afolder.nii.gz").mkdir()
    kinds["a folder"] = "afolder.nii.gz"
    os.mkfifo(folder / "pipe.nii.gz")
    kinds["a named pipe"] = "pipe.nii.gz"
    (folder / "text.nii.gz").write_text("not an image\n")
    kinds["text"] = "text.nii.gz"
    (folder / "cut.nii.gz").write_bytes((folder / GOOD_CT).read_bytes()[:600])
    kinds["truncated gzip"] = "cut.nii.gz"
    array = ct_array()
    array[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(array.transpose(2, 1, 0), np.eye(4)), folder / "nan.nii")
    kinds["NaN voxels"] = "nan.nii"
    image = nib.Nifti1Image(ct_array().transpose(2, 1, 0), np.eye(4))
    image.header["pixdim"][2] = 0.0
    nib.save(image, folder / "zero.nii")
    kinds["zero voxel size"] = "zero.nii"
    return kinds


def _snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_fifo()
    }


def _run(folder: Path, argv: list, timeout: float = 300) -> tuple:
    env = dict(os.environ, PASTA_HOME=str(folder / "home"), PYTHONPATH=str(ROOT / "PastaSlicer"))
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pastacore.cli.main", *argv],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode, done.stderr, time.monotonic() - started
    except subprocess.TimeoutExpired:
        return None, "timed out", time.monotonic() - started


def _judge(code, err: str, bad: bool, written: list, changed: list, left: list) -> str | None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code is None:
        return "hung (no answer within the time limit)"
    if "Traceback" in err or code not in (0, 2):
        return f"exit {code}: " + (err.strip().splitlines() or ["(nothing on stderr)"])[-1][:160]
    if code == 2 and len(errors) != 1:
        return f"exit 2 with {len(errors)} error lines"
    if code == 2 and written:
        return f"exit 2 but wrote {written}"
    if changed:
        return f"changed the user's files {changed}"
    if left:
        return f"left {left} behind"
    if code == 0 and bad:
        return "exit 0 on bad input"
    return None


def probe(commands: dict, base: Path) -> tuple:
    """Run every (command, slot, kind) and the existing-output case of every command; findings."""
    findings, runs = [], 0
    for template in commands.values():
        slots = [s for s in ("{ct}", "{seg}") if s in template]
        trials = [(slot, kind) for slot in slots for kind in KINDS] + [(None, "existing output")]
        for slot, kind in trials:
            folder = Path(tempfile.mkdtemp(dir=base))
            write_ct(folder / GOOD_CT, ct_array())
            labels = np.zeros(ct_array().shape, np.uint8)
            labels[8:12, 10:14, 10:16] = 1
            write_ct(folder / GOOD_SEG, labels)
            kinds = _bad_files(folder)
            values = {"{ct}": GOOD_CT, "{seg}": GOOD_SEG, "{out}": "out", "{outdir}": "outdir"}
            if slot is not None:
                values[slot] = kinds[kind]
            else:  # the user's file where the output goes, and the user's folder with a file in it
                (folder / "out.nii.gz").write_text("the user's")
                (folder / "out.csv").write_text("the user's")
                (folder / "outdir").mkdir()
                (folder / "outdir" / "report.json").write_text("the user's")
                (folder / "outdir" / "model.pth").write_text("the user's")
            argv = [_fill(part, values) for part in template]
            before = _snapshot(folder)
            code, err, seconds = _run(folder, argv)
            runs += 1
            after = _snapshot(folder)
            changed = sorted(p for p in before if p in after and before[p] != after[p])
            new = sorted(p for p in after if p not in before and not p.startswith("home/"))
            written = [p for p in new if p.startswith(("out", "store/probe"))]
            left = [p for p in new if ".pasta-" in p or p.endswith(".pasta-claim")]
            bad = slot is not None  # a folder of the user's may take a command's files beside its own
            verdict = _judge(code, err, bad, written, changed, left)
            shown = " ".join(argv)
            print(
                f"{'FINDING' if verdict else 'ok':8} {seconds:5.1f}s {kind:18} pasta {shown}"
                + (f"  -> {verdict}" if verdict else "")
            )
            if verdict:
                findings.append((shown, kind, verdict))
    return runs, findings


def _fill(part: str, values: dict) -> str:
    for key, value in values.items():
        part = part.replace(key, value)
    return part


KINDS = ["missing", "empty", "a folder", "a named pipe", "text", "truncated gzip", "NaN voxels", "zero voxel size"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="commands to probe (default: all)")
    args = parser.parse_args()
    commands = {k: v for k, v in COMMANDS.items() if not args.only or k in args.only}
    with tempfile.TemporaryDirectory() as base:
        started = time.monotonic()
        runs, findings = probe(commands, Path(base))
    print(f"\n{runs} runs of {len(commands)} commands in {time.monotonic() - started:.0f} s: {len(findings)} findings")
    for shown, kind, verdict in findings:
        print(f"  {kind}: pasta {shown} -> {verdict}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
