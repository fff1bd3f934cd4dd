"""Talk to a PASTA server (``pasta serve``) over HTTP with the standard library only.

Every failure is a :class:`~pastacore.errors.PastaError` of one line that names the server and
says what to do: unreachable (with the URL), a wrong or missing token, an upload over the
server's limit, a refused job (the server's reason), a job the server no longer knows (it was
restarted). ``https://`` URLs are checked against the system's certificate authorities, or the
one in ``PASTA_SERVER_CA`` (a hospital's own CA file).

The API (JSON unless said otherwise; ``Authorization: Bearer TOKEN`` on all but ``/health``):
``GET /health``; ``GET /models``; ``POST /jobs`` (action, options, inputs, the volumes it will
upload with their sizes) -> ``{"id"}``; ``PUT /jobs/ID/volumes/KEY`` (gzip NRRD bytes; the job
is queued when the last arrives); ``GET /jobs/ID`` (state, progress, result); ``POST
/jobs/ID/cancel``; ``GET /jobs/ID/volumes/KEY`` and ``GET /jobs/ID/files/PATH`` (the outputs);
``DELETE /jobs/ID`` (forget the job and its results).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN_VARIABLE = "PASTA_TOKEN"
SERVER_VARIABLE = "PASTA_SERVER"
CA_VARIABLE = "PASTA_SERVER_CA"
CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 20  # bytes sent or read per step of an upload or download
TOKEN_HINT = "--token, PASTA_TOKEN or the PASTA hub's server setting"


class JobGone(PastaError):
    """The server does not know the job (any more)."""


def normalized_url(url: str) -> str:
    """``url`` with a scheme (``http://`` when none is given) and no trailing slash; refused in one line when unusable."""
    text = str(url or "").strip()
    if not text:
        raise PastaError(f"no PASTA server given: pass --server URL or set {SERVER_VARIABLE}")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PastaError(f"{url!r} is not a PASTA server URL (http://HOST:PORT or https://HOST:PORT)")
    try:
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        raise PastaError(f"{url!r} has an invalid port") from None
    return text.rstrip("/")


class ServerClient:
    """One PASTA server at ``url`` with ``token`` (None: ``PASTA_TOKEN``, if set)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = normalized_url(url)
        self.token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        self.timeout = timeout
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")

    # -- the calls ----------------------------------------------------------------------------
    def health(self) -> dict:
        """What ``/health`` says (version, device, models, workers); no token needed."""
        return self.request("GET", "/health")

    def models(self) -> list:
        """The server's installed models: ``[{"name", "version", "task", "builtin"}]``."""
        return self.request("GET", "/models").get("models", [])

    def check(self) -> str:
        """One line describing the server, after checking that it answers and takes the token."""
        health = self.health()
        models = self.models()
        usable = [m["name"] for m in models if m.get("task") in ("segmentation", "unknown")]
        return (
            f"PASTA server {health.get('version', '?')} at {self.url}: {health.get('device', 'device unknown')}, "
            f"{health.get('workers', '?')} worker(s), {len(models)} model(s) ({', '.join(usable) or 'none that segment'})"
        )

    def create_job(self, spec: dict) -> dict:
        return self.request("POST", "/jobs", body=json.dumps(spec).encode("utf-8"), content_type="application/json")

    def status(self, job: str) -> dict:
        return self.request("GET", f"/jobs/{job}", job=job)

    def cancel(self, job: str) -> dict:
        return self.request("POST", f"/jobs/{job}/cancel", job=job)

    def delete(self, job: str) -> None:
        self.request("DELETE", f"/jobs/{job}", job=job)

    def upload_steps(self, job: str, key: str, data: bytes) -> Iterator[None]:
        """Send one volume in pieces, yielding between them (a front end stays responsive)."""
        connection = self._connection()
        try:
            connection.putrequest("PUT", self._path(f"/jobs/{job}/volumes/{urllib.parse.quote(key)}"))
            for name, value in self._headers("application/octet-stream", len(data)).items():
                connection.putheader(name, value)
            connection.endheaders()
            try:
                for start in range(0, len(data), CHUNK):
                    connection.send(data[start : start + CHUNK])
                    yield
            except OSError:
                pass  # the server stopped reading (a 413): its answer says why
            self._answer(connection, job)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()

    def download_steps(self, path: str, sink: list, job: str | None = None) -> Iterator[None]:
        """Fetch ``path`` into ``sink`` (a list of byte pieces), yielding between pieces."""
        connection = self._connection()
        try:
            connection.request("GET", self._path(path), headers=self._headers())
            response = connection.getresponse()
            if response.status != 200:
                self._raise_for(response.status, response.read(), job)
            while True:
                piece = response.read(CHUNK)
                if not piece:
                    break
                sink.append(piece)
                yield
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()

    def download(self, path: str, job: str | None = None) -> bytes:
        sink = []
        for _ in self.download_steps(path, sink, job):
            pass
        return b"".join(sink)

    # -- plumbing -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "", job: str | None = None) -> dict:
        """One JSON call; the answer as a dict (``{}`` for an empty one)."""
        connection = self._connection()
        try:
            connection.request(method, self._path(path), body=body, headers=self._headers(content_type, len(body or b"")))
            return self._answer(connection, job)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()

    def _answer(self, connection: http.client.HTTPConnection, job: str | None) -> dict:
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            self._raise_for(response.status, data, job)
        try:
            return json.loads(data) if data else {}
        except ValueError:
            raise PastaError(f"{self.url} answered with something other than a PASTA server's JSON; is the URL right?") from None

    def _raise_for(self, status: int, data: bytes, job: str | None) -> None:
        detail = _detail(data)
        if status == 401:
            given = "refused the token" if self.token else "needs a token"
            raise PastaError(f"the PASTA server at {self.url} {given}: check it ({TOKEN_HINT})")
        if status == 404 and job is not None:
            raise JobGone(
                f"the PASTA server at {self.url} no longer knows job {job[:8]}... (it was restarted, or the job's "
                "results expired); run it again"
            )
        if status == 404:
            raise PastaError(f"{self.url} is not a PASTA server (HTTP 404 for {detail or 'the API'}); is the URL right?")
        if status == 413:
            raise PastaError(f"the PASTA server at {self.url} refused the upload: {detail or 'it is larger than it accepts'}")
        if 400 <= status < 500:
            raise PastaError(detail or f"the PASTA server at {self.url} refused the request (HTTP {status})")
        raise PastaError(f"the PASTA server at {self.url} failed (HTTP {status}{': ' + detail if detail else ''})")

    def _unreachable(self, exc: BaseException) -> PastaError:
        if isinstance(exc, ssl.SSLError):
            return PastaError(
                f"cannot talk to the PASTA server at {self.url} over TLS ({exc.reason or exc}); if it uses your "
                f"hospital's own certificate authority, set {CA_VARIABLE} to its CA file"
            )
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, (socket.timeout, TimeoutError)):
            reason = "no answer in time"
        if isinstance(exc, http.client.RemoteDisconnected) and not self._https:
            reason += "; does it serve https://?"
        return PastaError(
            f"cannot reach the PASTA server at {self.url} ({reason}): is it running, and are the address and port right?"
        )

    def _connection(self) -> http.client.HTTPConnection:
        """A connected connection (at most ``CONNECT_TIMEOUT_S`` to connect, ``timeout`` per read or send)."""
        if self._https:
            context = ssl.create_default_context(cafile=os.environ.get(CA_VARIABLE) or None)
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=CONNECT_TIMEOUT_S, context=context)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT_S)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise self._unreachable(exc) from None
        connection.sock.settimeout(self.timeout)
        return connection

    def _path(self, path: str) -> str:
        return self._prefix + path

    def _headers(self, content_type: str = "", length: int | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None and content_type:
            headers["Content-Length"] = str(length)
        return headers


def _detail(data: bytes) -> str:
    """The one-line reason in a server's error answer (FastAPI's ``{"detail": ...}``)."""
    try:
        detail = json.loads(data).get("detail", "")
    except (ValueError, AttributeError):
        detail = data.decode("utf-8", "replace")
    text = str(detail).strip().splitlines()
    return text[0][:300] if text else ""
