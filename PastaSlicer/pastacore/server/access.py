"""Who may use the server: tokens, checked in constant time, and the owner each job belongs to.

A server on a loopback address (127.0.0.1, ::1, localhost) may run without tokens: only this
machine's users reach it. On any other address it needs them: ``--token TOKEN`` (one shared
token) or ``--tokens FILE`` (one ``NAME TOKEN`` or ``TOKEN`` per line, ``#`` comments: one per
person or per workstation, so each sees only its own jobs and the log names who ran what).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from ..errors import PastaError, option

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN_CHARACTERS = 16


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Tokens:
    """The accepted tokens, kept as SHA-256 digests with a name each."""

    def __init__(self, named: dict | None = None) -> None:
        self._digests = [(name, _digest(token)) for name, token in (named or {}).items()]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def owner(self, given: str | None) -> str | None:
        """The name of the token ``given`` matches (every token is compared, in constant time), else
        None; ``""`` when the server needs no token."""
        if not self._digests:
            return ""
        if not given:
            return None
        digest = _digest(given)
        found = None
        for name, known in self._digests:
            if hmac.compare_digest(digest, known) and found is None:
                found = name
        return found


def read_tokens_file(path: str | Path) -> dict:
    """``{name: token}`` from a tokens file; a bad line is refused naming its number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PastaError(f"cannot read the tokens file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PastaError(f"the tokens file {path} is not UTF-8 text") from None
    named = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise PastaError(f"{path} line {number}: write 'NAME TOKEN' or 'TOKEN' (a token has no spaces)")
        name, token = (words[0], words[1]) if len(words) == 2 else (f"token {number}", words[0])
        check_token(token, f"{path} line {number}")
        if name in named:
            raise PastaError(f"{path} line {number}: the name {name!r} is used twice")
        named[name] = token
    if not named:
        raise PastaError(f"the tokens file {path} holds no token")
    return named


def check_token(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_CHARACTERS:
        raise PastaError(
            f"{where}: a token needs at least {MIN_TOKEN_CHARACTERS} characters (got {len(token)}); "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


def server_tokens(host: str, token: str | None, tokens_file: str | None) -> tuple:
    """``(Tokens, generated token or None)`` for a server on ``host``: a non-loopback host without
    ``--token``/``--tokens`` gets a generated token, which the caller prints once."""
    if token and tokens_file:
        raise PastaError(f"give {option('token')} or {option('tokens')}, not both")
    if tokens_file:
        return Tokens(read_tokens_file(tokens_file)), None
    if token:
        check_token(token, option("token"))
        return Tokens({"token": token}), None
    if host in LOOPBACK_HOSTS:
        return Tokens(), None
    generated = new_token()
    return Tokens({"token": generated}), generated
