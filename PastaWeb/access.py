"""Who may talk to the server, and the files it hands out.

Bound to 127.0.0.1 the server needs nothing more. Bound to any other host it needs a token:
every HTTP request (the page, its scripts, the websocket) must carry ``?token=...`` once (a
cookie then carries it) or it gets 403. Downloads (report archives, scenes) are served from one
route, by an unguessable name.
"""

from __future__ import annotations

import secrets
from pathlib import Path

COOKIE = "pasta_token"
DOWNLOAD_ROUTE = "/pasta/download"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_middleware(token: str):
    from aiohttp import web

    @web.middleware
    async def check(request, handler):
        given = request.query.get("token") or request.cookies.get(COOKIE)
        if not given or not secrets.compare_digest(given, token):
            return web.Response(status=403, text="PASTA: this server needs its token (?token=...)\n")
        response = await handler(request)
        if request.query.get("token") and hasattr(response, "set_cookie"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


class Downloads:
    """Files offered for download, each under a random name of the download route."""

    def __init__(self):
        self._files = {}

    def offer(self, path) -> tuple:
        """``(key, URL)`` under which ``path`` can be fetched."""
        key = secrets.token_urlsafe(12)
        self._files[key] = Path(path)
        return key, f"{DOWNLOAD_ROUTE}/{key}/{Path(path).name}"

    def read(self, key: str) -> bytes | None:
        path = self._files.get(key)
        return path.read_bytes() if path is not None and path.is_file() else None

    def route(self):
        from aiohttp import web

        async def serve(request):
            path = self._files.get(request.match_info["key"])
            if path is None or not path.is_file():
                return web.Response(status=404, text="no such download\n")
            return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})

        return web.get(DOWNLOAD_ROUTE + "/{key}/{name}", serve)


def bind(wslink_server, downloads: Downloads, token: str | None) -> None:
    """Attach the download route (and the token check) to the aiohttp application."""
    app = wslink_server.app
    if token:
        app.middlewares.append(token_middleware(token))
    app.router.add_routes([downloads.route()])
