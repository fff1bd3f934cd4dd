"""The server's HTTP API on FastAPI (the only module that imports it; see
:mod:`pastacore.tasks.server_client` for the routes from a client's side).

Every route but ``/health`` needs a token when the server has tokens (401 otherwise); a job is
visible to the token that made it only (any other gets 404, as for a job that does not exist).
An upload is refused with 413 before it is read when its ``Content-Length`` is over the limit,
and as soon as the limit is passed when it has none.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations
# (Request, Depends) at run time, and those names exist only inside create_app.
import json
from typing import TYPE_CHECKING

from ..errors import PastaError
from .policy import TooLarge, megabytes
from .service import Conflict, TooMany

if TYPE_CHECKING:
    from .access import Tokens
    from .service import Service

MAX_JOB_JSON = 8 << 20  # bytes of a job's description (options, inputs): JSON, not volumes
UPLOAD_PIECE = 1 << 20


def create_app(service: "Service", tokens: "Tokens") -> object:
    """The FastAPI application serving ``service`` to the holders of ``tokens``."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse

    app = FastAPI(title="PASTA server", docs_url=None, redoc_url=None, openapi_url=None)

    def owner(request: Request) -> str:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else None
        who = tokens.owner(given)
        if who is None:
            raise HTTPException(
                401, "this PASTA server needs its token (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"}
            )
        return who

    def job_of(job_id: str, who: str):
        job = service.book.get(job_id, who)
        if job is None:
            raise HTTPException(404, f"no job {job_id[:8]}... (unknown, expired, or another token's)")
        return job

    @app.exception_handler(PastaError)
    async def pasta_error(request: Request, exc: PastaError):
        status = (
            413 if isinstance(exc, TooLarge) else 409 if isinstance(exc, Conflict) else 429 if isinstance(exc, TooMany) else 400
        )
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/health")
    def health():
        return service.health()

    @app.get("/models")
    def models(who: str = Depends(owner)):
        return {"models": service.models()}

    @app.post("/jobs", status_code=201)
    async def create(request: Request, who: str = Depends(owner)):
        body = await _read_limited(request, MAX_JOB_JSON, "a job's description")
        try:
            spec = json.loads(body)
        except ValueError:
            raise PastaError("the job's description is not JSON") from None
        job = await run_in_threadpool(service.create, who, spec)
        return {"id": job.id, "state": job.state, "missing": sorted(job.spec["volumes"])}

    @app.put("/jobs/{job_id}/volumes/{key}")
    async def upload(job_id: str, key: str, request: Request, who: str = Depends(owner)):
        job = job_of(job_id, who)
        path, declared = service.upload_path(job, key)
        limit = min(declared, service.max_bytes)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise TooLarge(_too_large(length, declared, service.max_bytes))
        received = 0
        partial = path.with_name(path.name + ".part")
        try:
            with open(partial, "wb") as sink:
                async for piece in request.stream():
                    received += len(piece)
                    if received > limit:
                        raise TooLarge(_too_large(str(received), declared, service.max_bytes))
                    sink.write(piece)
            if received != declared:
                raise PastaError(f"volume {key!r} arrived with {received} bytes; the job announced {declared}")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        await run_in_threadpool(service.uploaded, job, key)
        return job.to_dict()

    @app.get("/jobs/{job_id}")
    def status(job_id: str, who: str = Depends(owner)):
        return job_of(job_id, who).to_dict()

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str, who: str = Depends(owner)):
        job = job_of(job_id, who)
        service.cancel(job)
        return job.to_dict()

    @app.delete("/jobs/{job_id}", status_code=204)
    def delete(job_id: str, who: str = Depends(owner)):
        service.forget(job_of(job_id, who))

    @app.get("/jobs/{job_id}/volumes/{key}")
    def volume(job_id: str, key: str, who: str = Depends(owner)):
        return _download(job_of(job_id, who), "volumes", key)

    @app.get("/jobs/{job_id}/files/{name:path}")
    def file(job_id: str, name: str, who: str = Depends(owner)):
        return _download(job_of(job_id, who), "files", name)

    def _download(job, kind: str, name: str):
        from starlette.background import BackgroundTask

        path = service.output(job, kind, name)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            background=BackgroundTask(service.book.downloaded, job, f"{kind}/{name}"),
        )

    return app


async def _read_limited(request, limit: int, what: str) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"{what} is {megabytes(int(length))}; at most {megabytes(limit)} is accepted")
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise TooLarge(f"{what} is over {megabytes(limit)}; at most that is accepted")
        pieces.append(piece)
    return b"".join(pieces)


def _too_large(length: str, declared: int, max_bytes: int) -> str:
    size = megabytes(int(length)) if length.isdigit() else "of unknown size"
    if declared < max_bytes:
        return f"the upload is {size}, more than the {megabytes(declared)} the job announced"
    return f"the upload is {size}; this server accepts at most {megabytes(max_bytes)} (its --max-upload-mb)"
