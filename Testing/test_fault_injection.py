"""Faults injected while the ``pasta`` commands write: a full disk or a file-size limit in a child
process, SIGTERM or SIGINT at chosen points of a write, damaged model-store entries, output
collisions. Whatever happens, the previous files stay as they were, no temporary file or folder
is left, and stderr holds exactly one ``error:`` line."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pastacore.cli.main import main
from pastacore.fileio import read_volume, write_volume
from pastacore.geometry import Grid, Volume

ROOT = Path(__file__).resolve().parents[1]
SIGNAL_POINT = """
import importlib, os, sys
point, signum, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if point:
    module_name, attr, when, nth = point.split(":")
    module = importlib.import_module(module_name)
    original, calls = getattr(module, attr), [0]
    def wrapper(*args, **kwargs):
        calls[0] += 1
        hit = calls[0] == int(nth)
        if hit and when == "before":
            os.kill(os.getpid(), signum)
        result = original(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signum)
        return result
    setattr(module, attr, wrapper)
from pastacore.cli.main import main
sys.exit(main(argv))
"""


def child(argv, cwd, point="", signum=signal.SIGTERM, file_limit=None, env=None):
    """Run ``pasta argv`` in a child process, optionally signalling itself at ``point``
    (``module:function:before|after:nth call``) or under a file-size limit (bytes)."""

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "PastaSlicer"), str(ROOT / "Testing")]))
    environment.pop("PASTA_PROGRESS", None)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_POINT, point, str(int(signum)), *map(str, argv)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        timeout=600,
        preexec_fn=limit if file_limit else None,
    )
    # decoded without newline translation: a carriage return stays one (what a terminal sees)
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


def one_error_line(result, fragment=""):
    stderr = result.stderr if hasattr(result, "stderr") else result.err  # a child process, or capsys
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def leftovers(folder):
    return sorted(str(p) for p in Path(folder).rglob("*") if p.name.startswith(".pasta-") or p.name.endswith(".part"))


def digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def phantom(n=40):
    """Air, a 20 HU body and a 60 HU spherical liver (TotalSegmentator v1 label 5) at 1 mm."""
    k, j, i = np.indices((n, n, n))
    c = (n - 1) / 2
    r = np.sqrt((k - c) ** 2 + (j - c) ** 2 + (i - c) ** 2)
    array = np.full((n, n, n), -1000.0, np.float32)
    array[r < n * 0.48] = 20
    array[r < n * 0.4] = 60
    array += np.random.default_rng(0).normal(0, 10, array.shape).astype(np.float32)
    grid = Grid((n, n, n), (1.0, 1.0, 1.0), (-c, -c, -c))
    return Volume(np.round(array).astype(np.int16), grid), Volume((r < n * 0.4).astype(np.uint8) * 5, grid, is_label=True)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small CT, its liver mask, a lesion label map (1 organ, 2 lesion) and a tiny PASTA network."""
    import torch

    from pastacore.networks.unet import PastaUNet

    folder = tmp_path_factory.mktemp("case")
    ct, liver = phantom()
    write_volume(ct, folder / "ct.nii.gz")
    write_volume(liver, folder / "ct_seg.nii.gz")
    labels = (liver.array > 0).astype(np.uint8)
    labels[16:24, 16:24, 16:24] = 2
    write_volume(liver.with_array(labels), folder / "seg.nii.gz")
    torch.manual_seed(0)
    torch.save(PastaUNet(num_classes=3, base_features=2, num_pool=2).state_dict(), folder / "tiny.pth")
    return folder


def fresh(case, tmp_path):
    """A working folder holding copies of the case's inputs."""
    for name in ("ct.nii.gz", "ct_seg.nii.gz", "seg.nii.gz", "tiny.pth"):
        (tmp_path / name).write_bytes((case / name).read_bytes())
    return tmp_path


def sentinel(path, text="an earlier result, to be kept\n"):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return path


# --- disk full: a file-size limit in the child -----------------------------------------------------

SYNTH = [
    "synth",
    "ct.nii.gz",
    "--box-ijk",
    "12,12,12,28,28,28",
    "--attributes",
    "12 mm round hypodense liver lesion",
    "--organ-mask",
    "ct_seg.nii.gz",
    "--seed",
    "3",
]
WRITES = {
    "standardize nii.gz": (["standardize", "ct.nii.gz", "out.nii.gz", "--spacing", "0.5", "--overwrite"], ["out.nii.gz"]),
    "standardize nii": (["standardize", "ct.nii.gz", "out.nii", "--spacing", "0.5", "--overwrite"], ["out.nii"]),
    "standardize nrrd": (["standardize", "ct.nii.gz", "out.nrrd", "--spacing", "0.5", "--overwrite"], ["out.nrrd"]),
    "segment": (
        ["segment", "ct.nii.gz", "--model", "tiny.pth", "--roi=-10,-10,-10,10,10,10", "--out", "s.nii", "--overwrite"],
        ["s.nii", "s.json"],
    ),
    "synth": (
        SYNTH + ["--out-image", "a.nii", "--out-mask", "m.nii.gz", "--out-report", "r.json", "--overwrite"],
        ["a.nii", "m.nii.gz", "r.json"],
    ),
    "report": (
        ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "rep", "--overwrite"],
        ["rep/report.json", "rep/report.pdf", "rep/notes.txt"],
    ),
    "models forward": (["models", "forward", "tiny.pth", "x.npy", "y.npy", "--overwrite"], ["y.npy"]),
    "models import": (
        ["models", "--store", "store", "import", "tiny.pth", "--name", "tiny", "--overwrite"],
        ["store/tiny/model.json", "store/tiny/tiny.pth"],
    ),
}


@pytest.mark.parametrize("command", sorted(WRITES))
def test_a_full_disk_replaces_nothing(command, case, tmp_path):
    folder = fresh(case, tmp_path)
    argv, outputs = WRITES[command]
    np.save(folder / "x.npy", np.zeros((1, 1, 32, 32, 32), np.float32))
    for name in outputs:
        sentinel(folder / name)
    before = digests(folder)
    result = child(argv, folder, file_limit=4096)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result, "could not write")
    assert "file too large" in line
    assert leftovers(folder) == []
    assert digests(folder) == before  # every earlier output intact, nothing added


def _mount_full_tmpfs(folder):
    folder.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode != 0
    ):
        pytest.skip("a small tmpfs needs root and mount")


@pytest.mark.parametrize("command", ["standardize nii.gz", "report", "synth"])
def test_no_space_left_on_device(command, case, tmp_path):
    """On a real file system that fills up (a 256 KiB tmpfs, where the tests run as root)."""
    disk = tmp_path / "disk"
    _mount_full_tmpfs(disk)
    try:
        folder = fresh(case, disk)
        argv, outputs = WRITES[command]
        for name in outputs:
            sentinel(folder / name)
        before = digests(folder)
        result = child(argv, folder)
        assert result.returncode == 2, result.stderr
        assert one_error_line(result, "could not write").endswith("no space left on device")
        assert leftovers(folder) == [] and digests(folder) == before
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --- interrupts at points of a write -------------------------------------------------------------

POINTS = {
    "standardize, volume written": (["standardize", "ct.nii.gz", "out.nii.gz", "--overwrite"], "SimpleITK:WriteImage:after:1"),
    "standardize, before the check": (
        ["standardize", "ct.nii.gz", "out.nii.gz", "--overwrite"],
        "pastacore.fileio.verify:verify_output:before:1",
    ),
    "synth, second volume written": (
        SYNTH + ["--out-image", "a.nii.gz", "--out-mask", "m.nii.gz", "--out-report", "r.json", "--overwrite"],
        "SimpleITK:WriteImage:after:2",
    ),
    "report, DICOM written": (
        ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "rep", "--overwrite"],
        "pastacore.report.dicom_export:write_seg_sr:after:1",
    ),
    "report, key images written": (
        ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "rep", "--overwrite"],
        "pastacore.report.report_html:write_html_pdf:after:1",
    ),
    "report, checking the files": (
        ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "rep", "--overwrite"],
        "pastacore.fileio.verify:verify_output:before:3",
    ),
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("point", sorted(POINTS))
def test_an_interrupt_leaves_nothing_behind(point, signum, case, tmp_path):
    folder = fresh(case, tmp_path)
    argv, where = POINTS[point]
    sentinel(folder / "out.nii.gz")
    sentinel(folder / "rep" / "report.json")
    sentinel(folder / "rep" / "notes.txt", "mine\n")
    before = digests(folder)
    result = child(argv, folder, where, signum)
    assert result.returncode == 128 + signum, result.stderr
    one_error_line(result, "interrupted")
    assert leftovers(folder) == []
    assert digests(folder) == before


def test_an_interrupt_while_moving_outputs_into_place_completes_them(case, tmp_path):
    """Signals wait while outputs are moved into place: all of them are the new ones, none is lost."""
    folder = fresh(case, tmp_path)
    for name in ("a.nii.gz", "m.nii.gz", "r.json"):
        sentinel(folder / name)
    argv = SYNTH + ["--out-image", "a.nii.gz", "--out-mask", "m.nii.gz", "--out-report", "r.json", "--overwrite"]
    result = child(argv, folder, "os:replace:before:1")
    assert leftovers(folder) == []
    assert result.returncode == 128 + signal.SIGTERM
    read_volume(folder / "a.nii.gz")
    assert 2 in np.unique(read_volume(folder / "m.nii.gz", is_label=True).array)
    assert json.loads((folder / "r.json").read_text())["type_json"]


def test_an_interrupted_dataset_keeps_finished_cases_and_resumes(case, tmp_path):
    folder = fresh(case, tmp_path)
    argv = [
        "dataset",
        "--backgrounds",
        "ct.nii.gz",
        "--organ-masks",
        "ct_seg.nii.gz",
        "--n",
        "2",
        "--types",
        "liver_tumor",
        "--out",
        "ds",
        "--seed",
        "1",
    ]
    result = child(argv, folder, "pastacore.fileio:write_volume:after:4")  # in the second case
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    one_error_line(result, "interrupted")
    assert leftovers(folder) == []
    cases = sorted(p.relative_to(folder / "ds") for p in (folder / "ds").glob("*/*/*"))
    assert len(cases) == 1 and sorted(p.name for p in (folder / "ds" / cases[0]).iterdir()) == [
        "img.nii.gz",
        "label.nii.gz",
        "report.json",
        "total.nii.gz",
        "type.json",
    ]
    resumed = child(argv, folder)
    assert resumed.returncode == 0 and "1 written, 1 already there" in resumed.stdout, resumed.stderr


# --- --overwrite touches only the command's own files ---------------------------------------------


def test_report_overwrite_keeps_foreign_files(case, tmp_path, capsys):
    folder = fresh(case, tmp_path)
    out = folder / "rep"
    sentinel(out / "notes.txt", "mine\n")
    sentinel(out / "scans" / "other.nii.gz", "not ours\n")
    sentinel(out / "images" / "holiday.png", "a photo\n")
    assert main(["report", str(folder / "ct.nii.gz"), str(folder / "seg.nii.gz"), "--out-dir", str(out)]) == 0
    first = json.loads((out / "report.json").read_text())
    assert (out / "images" / "lesion_1.png").is_file() and (out / "dicom" / "seg.dcm").is_file()
    assert (
        main(
            [
                "report",
                str(folder / "ct.nii.gz"),
                str(folder / "seg.nii.gz"),
                "--out-dir",
                str(out),
                "--formats",
                "json",
                "--overwrite",
            ]
        )
        == 0
    )
    second = json.loads((out / "report.json").read_text())
    assert second["created"] >= first["created"]
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "scans" / "other.nii.gz").is_file()
    assert (out / "images" / "holiday.png").read_text() == "a photo\n"
    assert not (out / "images" / "lesion_1.png").exists() and not (out / "report.pdf").exists()  # the earlier report's
    assert not (out / "dicom").exists() and leftovers(folder) == []


def test_report_into_the_current_folder(case, tmp_path, monkeypatch, capsys):
    folder = fresh(case, tmp_path)
    sentinel(folder / "notes.txt", "mine\n")
    monkeypatch.chdir(folder)
    assert main(["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", ".", "--formats", "json,html"]) == 0
    assert (folder / "report.json").is_file() and (folder / "notes.txt").read_text() == "mine\n"
    assert main(["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", ".", "--formats", "json"]) == 2
    assert main(["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", ".", "--formats", "json", "--overwrite"]) == 0
    assert not (folder / "images").exists() and leftovers(folder) == []


def test_atomic_directory_rolls_back_a_failed_swap(tmp_path, monkeypatch):
    from pastacore.errors import PastaError
    from pastacore.fileio import atomic

    out = tmp_path / "out"
    sentinel(out / "a.txt", "old a\n")
    sentinel(out / "sub" / "b.txt", "old b\n")
    sentinel(out / "mine.txt", "mine\n")
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 4:  # two moved aside, one moved in, then the disk fails
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(PastaError, match="could not write out: no space left on device"):
        with atomic.atomic_directory(out, overwrite=True, owned=("a.txt", "sub/*.txt")) as temp:
            (temp / "a.txt").write_text("new a\n")
            (temp / "sub").mkdir()
            (temp / "sub" / "b.txt").write_text("new b\n")
    monkeypatch.setattr(atomic.os, "replace", real)
    assert digests(out) == {
        "a.txt": hashlib.sha256(b"old a\n").hexdigest(),
        "sub/b.txt": hashlib.sha256(b"old b\n").hexdigest(),
        "mine.txt": hashlib.sha256(b"mine\n").hexdigest(),
    }
    assert leftovers(tmp_path) == []


# --- outputs are checked before any work ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "ct.nii.gz", "--out", "o.png"], "cannot write o.png"),
        (["segment", "ct.nii.gz", "--out", "ct.nii.gz", "--overwrite"], "is also an input"),
        (["segment", "ct.nii.gz", "--out", "none/o.nii.gz"], "does not exist"),
        (SYNTH + ["--out-image", "x.nii.gz", "--out-mask", "x.nii.gz", "--out-report", "r.json"], "same file"),
        (
            SYNTH + ["--out-image", "a.nii.gz", "--out-mask", "m.nii.gz", "--out-report", "r.json", "--out-type-json", "r.json"],
            "same file",
        ),
        (
            SYNTH + ["--out-image", "a.nii.gz", "--out-mask", "ct_seg.nii.gz", "--out-report", "r.json", "--overwrite"],
            "is also an input",
        ),
        (["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "ct.nii.gz"], "is a file"),
        (["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "none/rep"], "does not exist"),
        (
            ["features", "ct.nii.gz", "--mask", "seg.nii.gz", "--crop", "lesion", "--model", "tiny.pth", "--out", "f.png"],
            "cannot write f.png",
        ),
        (["models", "forward", "tiny.pth", "x.npy", "x.npy", "--overwrite"], "is also an input"),
    ],
)
def test_outputs_are_refused_before_any_work(argv, message, case, tmp_path, monkeypatch, capsys):
    import pastacore.inference.segment as segment
    import pastacore.networks.loading as loading
    import pastacore.report.measure as measure
    import pastacore.synthesis as synthesis

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    for module, name in (
        (segment, "segment_volume"),
        (synthesis, "synthesize_lesion"),
        (measure, "measure_lesions"),
        (loading, "load_encoder"),
        (loading, "load_for_segmentation"),
    ):
        monkeypatch.setattr(module, name, no_work)
    folder = fresh(case, tmp_path)
    np.save(folder / "x.npy", np.zeros((4, 4, 4), np.float32))
    monkeypatch.chdir(folder)
    assert main(argv) == 2
    one_error_line(capsys.readouterr(), message)


# --- stderr: one line, whatever native code prints ------------------------------------------------


def _visible_lines(stderr: str) -> list:
    """What a terminal shows: each line after its last carriage return, blank ones dropped."""
    return [line.split("\r")[-1] for line in stderr.split("\n") if line.split("\r")[-1].strip()]


def test_a_progress_bar_is_wiped_before_the_error(case, tmp_path):
    folder = fresh(case, tmp_path)
    sentinel(folder / "rep" / "report.pdf")
    result = child(
        ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", "rep", "--overwrite"],
        folder,
        file_limit=4096,
        env={"PASTA_PROGRESS": "1"},
    )
    assert "pasta report" in result.stderr  # the bar was shown...
    lines = _visible_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: could not write"), result.stderr  # ...and wiped


def test_native_warnings_stay_off_stderr(case, tmp_path):
    """A NIfTI whose sform and qform disagree makes ITK print warnings; the error is the only line."""
    import nibabel

    folder = fresh(case, tmp_path)
    image = nibabel.load(str(folder / "ct.nii.gz"))
    skewed = image.affine.copy()
    skewed[0, 1] = 0.3
    odd = nibabel.Nifti1Image(np.asanyarray(image.dataobj), image.affine)
    odd.set_sform(skewed, code=1)
    nibabel.save(odd, str(folder / "odd.nii.gz"))
    argv = ["standardize", "odd.nii.gz", "o.nii.gz"]
    noisy = child(["--debug", *argv], folder)
    assert "WARNING" in noisy.stderr and "Traceback" in noisy.stderr  # what --debug lets through
    result = child(argv, folder)
    assert result.returncode == 2
    one_error_line(result, "cannot read odd.nii.gz")


# --- a damaged model store ------------------------------------------------------------------------


@pytest.fixture()
def damaged_store(tmp_path):
    store = tmp_path / "home" / "models"
    for name, content in (
        ("no-fields", b'{"version": "1"}'),
        ("array", b"[1, 2]"),
        ("latin1", b'{"name": "caf\xe9"}'),
        ("no-files", b'{"name": "no-files"}'),
    ):
        (store / name).mkdir(parents=True)
        (store / name / "model.json").write_bytes(content)
    (store / "empty").mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"outside the store")
    for name, record in (("absolute", str(secret)), ("climbs", "../../secret.bin"), ("linked", "w.pth")):
        (store / name).mkdir()
        (store / name / "model.json").write_text(
            json.dumps({"name": name, "version": "1", "task": "segmentation", "files": [{"name": record, "sha256": "0" * 64}]})
        )
    os.symlink(secret, store / "linked" / "w.pth")
    return store


def test_a_damaged_store_is_listed_with_reasons(damaged_store, capsys):
    from pastacore.modelstore.store import ModelStore

    models = {m.name: m for m in ModelStore(damaged_store).list()}
    assert models["no-fields"].damaged == "model.json lacks name, files"
    assert models["array"].damaged == "model.json holds a JSON list, not an object"
    assert models["latin1"].damaged == "model.json is not UTF-8 text"
    assert models["no-files"].damaged == "model.json lacks files"
    assert models["empty"].damaged == "model.json is missing"
    assert not models["pasta-lung-default"].damaged
    assert main(["models", "--store", str(damaged_store), "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("DAMAGED") == 5 and "pasta-lung-default" in out
    assert main(["models", "--store", str(damaged_store), "remove", "array"]) == 0
    assert not (damaged_store / "array").exists()


def test_verify_never_reads_outside_the_store(damaged_store, monkeypatch, capsys):
    import pastacore.modelstore.store as store_module

    read = []
    real = store_module.sha256_of
    monkeypatch.setattr(store_module, "sha256_of", lambda path: read.append(Path(path).resolve()) or real(path))
    assert main(["models", "--store", str(damaged_store), "verify"]) == 2
    out = capsys.readouterr().out
    for name in ("absolute", "climbs", "linked"):
        assert f"{name}: " in out and "outside the model folder" in out.split(f"{name}: ")[1].splitlines()[0]
    assert all(damaged_store.resolve() in p.parents or "Resources" in p.parts for p in read), read


def test_segment_with_the_built_in_model_works_beside_a_damaged_store(damaged_store, case, tmp_path):
    (tmp_path / "work").mkdir()
    folder = fresh(case, tmp_path / "work")
    result = child(
        ["segment", "ct.nii.gz", "--out", "s.nii.gz", "--roi=-10,-10,-10,10,10,10"],
        folder,
        env={"PASTA_HOME": str(damaged_store.parent)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((folder / "s.json").read_text())["model"]["name"] == "pasta-lung-default"


def test_import_takes_only_what_inspect_accepts(case, tmp_path):
    import torch

    from pastacore.errors import PastaError
    from pastacore.modelstore.store import ModelStore
    from pastacore.networks.loading import inspect_checkpoint

    store = ModelStore(tmp_path / "store")
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(PastaError) as refused:
        inspect_checkpoint(tmp_path / "other.pth")
    with pytest.raises(PastaError) as also:
        store.import_file(tmp_path / "other.pth")
    assert str(also.value) == str(refused.value)
    assert not (tmp_path / "store" / "other").exists()
    assert store.import_file(case / "tiny.pth").name == "tiny"
