"""One road from every front end: each user action has one options object, which crosses
process boundaries as JSON unchanged; the command line words shared options once; the core's
import graph has no cycle."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from pastacore.actions import action, action_names
from pastacore.actions.options import options_from_dict, options_to_dict
from pastacore.errors import PastaError

CORE = Path(__file__).resolve().parent.parent / "PastaSlicer" / "pastacore"


def sample_value(field: dataclasses.Field, cls: type) -> object:
    """A value other than the default for each field type (so a lost field shows)."""
    import typing

    hint = typing.get_type_hints(cls)[field.name]
    text = str(hint)
    if dataclasses.is_dataclass(hint):
        return hint()
    if "tuple[float" in text:
        return (1.5, -2.0, 3.25, 4.0, 5.0, 6.0)
    if "tuple[int" in text:
        return (3, 1, 2)
    if "tuple[str" in text:
        return ("a", "b")
    if hint is bool:
        return not field.default
    if hint is int or text.startswith("int |"):
        return 7
    if hint is float or text.startswith("float |"):
        return 0.25
    if "dict" in text and "str" in text:
        return {"density": "hypodense"}
    if "SynthOptions" in text:
        return action("synth").OPTIONS(seed=9)
    return "some text"


@pytest.mark.parametrize("name", action_names())
def test_every_action_has_frozen_options_that_round_trip_through_json(name):
    module = action(name)
    cls = module.OPTIONS
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert callable(module.run) and dataclasses.is_dataclass(module.INPUTS)
    default = cls()
    assert options_from_dict(cls, json.loads(json.dumps(options_to_dict(default)))) == default
    changed = cls(**{f.name: sample_value(f, cls) for f in dataclasses.fields(cls)})
    assert changed != default
    back = options_from_dict(cls, json.loads(json.dumps(options_to_dict(changed))))
    assert back == changed


def test_a_damaged_options_record_is_refused_in_one_line():
    cls = action("segment").OPTIONS
    with pytest.raises(PastaError, match="unknown segment setting"):
        options_from_dict(cls, {"modle": "x"})
    with pytest.raises(PastaError, match="'overlap' cannot be"):
        options_from_dict(cls, {"overlap": "half"})
    with pytest.raises(PastaError, match="'tta' cannot be"):
        options_from_dict(cls, {"tta": 1})


def _help_by_option(argv):
    """{flag: its help line(s)} of a subcommand's --help."""
    import argparse

    from pastacore.cli.main import build_parser

    parser = build_parser()
    for word in argv:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return {tuple(a.option_strings): (a.help, a.default, a.choices, a.type) for a in parser._actions if a.option_strings}


def test_segment_and_batch_segment_word_their_shared_options_once():
    single, batch = _help_by_option(["segment"]), _help_by_option(["batch", "segment"])
    shared = set(single) & set(batch) - {("-h", "--help"), ("--out",)}  # where results go differs by nature
    assert {("--model",), ("--device",), ("--overlap",), ("--tta",), ("--roi",), ("--organ",), ("--prompt",)} <= shared
    assert {flags: single[flags] for flags in shared} == {flags: batch[flags] for flags in shared}


def test_report_and_batch_report_word_their_shared_options_once():
    single, batch = _help_by_option(["report"]), _help_by_option(["batch", "report"])
    shared = set(single) & set(batch) - {("-h", "--help"), ("--formats",)}  # defaults differ: all vs json
    assert {("--lesion-label",), ("--whole-labels",), ("--min-confidence",)} <= shared
    assert {flags: single[flags] for flags in shared} == {flags: batch[flags] for flags in shared}


def _imports(path: Path, module: str, modules: set) -> set:
    """Every pastacore module ``module`` imports: at the top, inside functions and for type checking."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if is_package else module.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != module)
    return found


def test_the_core_import_graph_has_no_cycle():
    files = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: _imports(p, m, set(files)) for m, p in files.items()}
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}  # a package's own __init__
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
