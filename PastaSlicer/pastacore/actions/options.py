"""What every action's options object shares: frozen dataclasses that travel as JSON.

An options object is what a user chose for one action (the flags of a command, the controls of
a Slicer module or the web page). It crosses process boundaries as plain JSON (the task
process, a cohort's manifest, the server), so :func:`options_to_dict` and
:func:`options_from_dict` round-trip it exactly: tuples come back as tuples, and an unknown or
mistyped field is refused in one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

from ..errors import PastaError

T = TypeVar("T")


def options_to_dict(options: object) -> dict:
    """The JSON-ready form of an options dataclass (tuples become lists)."""
    return _plain(dataclasses.asdict(options))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def options_from_dict(cls: type[T], data: dict | None) -> T:
    """``cls(**data)`` with each value converted to its field's type; PastaError names a bad field."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PastaError(f"unknown {_action_name(cls)} setting(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(value, hints[name], name, cls) for name, value in data.items()}
    return cls(**values)


def _action_name(cls: type) -> str:
    return cls.__name__.removesuffix("Options").lower() or cls.__name__


def _convert(value: Any, hint: Any, name: str, cls: type) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, name, cls)
            except PastaError as exc:
                errors.append(exc)
        raise errors[0] if errors else _bad(value, name, cls)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(value, name, cls)
        if args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(_convert(v, a, name, cls) for v, a in zip(value, args))
        item = args[0] if args else Any
        return tuple(_convert(v, item, name, cls) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _bad(value, name, cls)
        return dict(value)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise _bad(value, name, cls)
        return options_from_dict(hint, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(value, name, cls)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(value, name, cls)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(value, name, cls)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _bad(value, name, cls)
        return value
    return value


def _bad(value: Any, name: str, cls: type) -> PastaError:
    return PastaError(f"the {_action_name(cls)} setting {name!r} cannot be {str(value)[:40]!r}")
