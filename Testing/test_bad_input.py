"""Every case of the bad-input catalogue (``Testing/bad_input.py``), run as a user would run it:
exit code 2, exactly one ``error:`` line on stderr, no temporary file left, earlier files
intact; and the README's table is the one these runs produce."""

import functools

import bad_input
import pytest


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bad-input")


@functools.cache
def _outcome(key: str, folder: str):
    case = next(c for c in bad_input.CASES if c.key == key)
    return bad_input.run_case(case, folder)


def outcome(case, cases_dir):
    return _outcome(case.key, str(cases_dir / case.key))


@pytest.mark.parametrize("case", bad_input.CASES, ids=lambda c: c.key)
def test_bad_input_gets_one_error_line(case, cases_dir):
    result = outcome(case, cases_dir)
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, (result.code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.leftovers == [], result.leftovers
    assert result.changed == [], f"changed: {result.changed}"
    assert not result.stdout.startswith("wrote")


def test_readme_table_is_current(cases_dir):
    outcomes = {case.key: outcome(case, cases_dir) for case in bad_input.CASES}
    assert bad_input.readme_table() == bad_input.table(outcomes), (
        "README's 'What bad input gets' table is out of date: run PYTHONPATH=PastaSlicer python Testing/bad_input.py"
    )
