"""The ``pasta`` command line: subcommands, one-line errors with exit code 2, atomic outputs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_volume, run_cli

from pastacore.cli.main import main
from pastacore.fileio import read_volume, write_volume

run = run_cli


def assert_one_line_error(code, err, pattern):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


def test_help_lists_the_subcommands():
    result = subprocess.run([sys.executable, "-m", "pastacore.cli.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ("standardize", "models", "info", "demo"):
        assert name in result.stdout


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "pasta")
    result = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("pasta ")


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "standardize", str(tmp_path / "nope.nii.gz"), str(tmp_path / "out.nii.gz"))
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "out.nii.gz").exists()


def test_directory_where_a_file_is_expected(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "standardize", str(tmp_path / "empty"), str(tmp_path / "out.nii.gz"))
    assert_one_line_error(code, err, "without DICOM images")
    src = write_volume(make_volume(), tmp_path / "ct.nii.gz")
    code, _, err = run(capsys, "standardize", str(src), str(tmp_path))
    assert_one_line_error(code, err, "is a folder")


def test_unwritable_output(capsys, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/pasta-out.nii.gz"  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = str(locked / "out.nii.gz")
    src = write_volume(make_volume(), tmp_path / "ct.nii.gz")
    code, _, err = run(capsys, "standardize", str(src), target)
    assert_one_line_error(code, err, "not writable")
    code, _, err = run(capsys, "standardize", str(src), str(tmp_path / "no" / "such" / "out.nii.gz"))
    assert_one_line_error(code, err, "does not exist")


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["standardize"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    from pastacore.errors import PastaError

    with pytest.raises(PastaError):
        main(["--debug", "standardize", str(tmp_path / "nope.nii"), str(tmp_path / "o.nii")])


def test_standardize_and_map_back(capsys, tmp_path, sample_dir):
    out = tmp_path / "std.nii.gz"
    code, stdout, _ = run(capsys, "standardize", str(sample_dir / "lung1_label.nrrd"), str(out), "--label")
    assert code == 0 and "1x1x1 mm" in stdout
    std = read_volume(out, is_label=True)
    assert std.grid.spacing == pytest.approx((1, 1, 1)) and np.allclose(std.grid.direction, np.eye(3))
    # refuses to overwrite, keeps the earlier file
    before = out.read_bytes()
    code, _, err = run(capsys, "standardize", str(sample_dir / "lung1_label.nrrd"), str(out), "--label")
    assert_one_line_error(code, err, "--overwrite")
    assert out.read_bytes() == before
    back = tmp_path / "back.nii.gz"
    code, _, _ = run(capsys, "standardize", str(out), str(back), "--label", "--onto", str(sample_dir / "lung1_image.nrrd"))
    assert code == 0
    original = read_volume(sample_dir / "lung1_label.nrrd", is_label=True)
    mapped = read_volume(back, is_label=True)
    assert mapped.grid.same_as(original.grid)
    assert 2 * ((mapped.array > 0) & (original.array > 0)).sum() / ((mapped.array > 0).sum() + (original.array > 0).sum()) > 0.93


def test_standardize_refuses_an_image_given_as_label(capsys, tmp_path, sample_dir):
    code, _, err = run(capsys, "standardize", str(sample_dir / "lung1_image.nrrd"), str(tmp_path / "x.nii.gz"), "--label")
    assert_one_line_error(code, err, "negative values")
    assert list(tmp_path.iterdir()) == []


def test_info_reports_the_device(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0 and "device: CPU" in out and "torch" in out
    code, _, err = run(capsys, "info", "--device", "tpu")
    assert_one_line_error(code, err, "unknown device")


def test_a_closed_pipe_is_not_an_error():
    """`pasta ... | head` may stop reading before pasta writes: no 'internal error', no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    pasta = Path(sys.executable).with_name("pasta")
    finished = subprocess.run(["bash", "-c", f"'{pasta}' info | true"], capture_output=True, text=True)
    for noise in ("internal error", "Traceback", "Exception ignored", "BrokenPipe"):
        assert noise not in finished.stderr, finished.stderr


def test_core_messages_name_settings_the_command_line_shows_as_flags(tmp_path, capsys):
    """The core speaks of values; the command line names the setting as its flag, other front ends
    in words. No core message spells a flag itself."""
    import re
    from pathlib import Path

    from pastacore.errors import PastaError, command_line_flag, option

    error = PastaError(f"output x already exists; pass {option('overwrite')} to replace it")
    assert str(error) == 'output x already exists; pass the "overwrite" setting to replace it'
    assert error.render(command_line_flag) == "output x already exists; pass --overwrite to replace it"
    (tmp_path / "out.nii.gz").write_bytes(b"x")
    assert main(["standardize", str(tmp_path / "missing.nrrd"), str(tmp_path / "out.nii.gz")]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err
    core = Path(__file__).resolve().parent.parent / "PastaSlicer" / "pastacore"
    spelled = [
        f"{path.relative_to(core)}:{line}"
        for path in core.rglob("*.py")
        if "cli" not in path.parts
        for line, text in error_texts(path)
        if re.search(r"(^|[\s(])--[a-z][a-z-]+", text)
    ]
    assert not spelled, spelled


def error_texts(path):
    """(line, text) of every string written into a PastaError in ``path``."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("PastaError", "CancelledError"):
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield part.lineno, part.value


@pytest.mark.parametrize(
    "name, former",
    [("synth-dataset", "dataset"), ("train-classifier", "train-head"), ("train-attribute-heads", "train-attributes")],
)
def test_commands_say_what_they_make_and_the_former_names_still_work(name, former, capsys):
    for command in (name, former):
        with pytest.raises(SystemExit) as ended:
            main([command, "--help"])
        assert ended.value.code == 0
        assert f"usage: pasta {name}" in capsys.readouterr().out
