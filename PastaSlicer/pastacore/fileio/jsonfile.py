"""Reading a JSON object from a file, every way it can fail said in one line."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PastaError


def read_json_object(path: str | Path, shown: str | None = None) -> dict:
    """The JSON object in the file ``path``; ``shown`` names the file in messages (default: its path).
    A missing file, bytes that are not UTF-8, bad JSON or JSON that is not an object is refused."""
    shown = shown or str(path)
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise PastaError(f"{shown} is missing") from None
    except UnicodeDecodeError:
        raise PastaError(f"{shown} is not UTF-8 text") from None
    except OSError as exc:
        raise PastaError(f"cannot read {shown}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PastaError(f"{shown} is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise PastaError(f"{shown} holds a JSON {type(data).__name__}, not an object")
    return data
