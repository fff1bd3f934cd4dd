"""Before a server starts (``pasta web``, ``pasta serve``): the host resolves and the port is free,
said in one line instead of a traceback from deep inside the web framework."""

from __future__ import annotations

import errno
import os
import socket

from .errors import PastaError, option


def check_listen(host: str, port: int) -> None:
    """Refuse a host that does not resolve to an address of this machine, or a port in use."""
    if not 0 <= int(port) <= 65535:
        raise PastaError(f"{option('port')} must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise PastaError(f"cannot listen on {host!r}: the host name does not resolve ({getattr(exc, 'strerror', exc)})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if os.name != "nt":  # as servers bind: a port in TIME_WAIT is free (on Windows this flag would steal a port)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PastaError(
                    f"port {port} on {host} is in use by another program; choose another with {option('port')} (0 picks a free one)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PastaError(f"cannot listen on {host}: it is not an address of this machine") from None
            if exc.errno == errno.EACCES:
                raise PastaError(f"not allowed to listen on port {port} (ports below 1024 need administrator rights)") from None
            raise PastaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
