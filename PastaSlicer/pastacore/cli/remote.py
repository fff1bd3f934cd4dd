"""``--server URL`` and ``--token`` for the commands that can run on a PASTA server
(``pasta segment|synth|report``): the flags, and the run of an action there.

Nothing here imports torch: a laptop without it segments on the server. The volumes are read
here (as ``pasta segment`` reads them), sent, and the results written here through
:mod:`pastacore.fileio.atomic`, so the outputs and messages are those of a local run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..tasks.server_client import SERVER_VARIABLE, TOKEN_VARIABLE

if TYPE_CHECKING:
    import argparse

    from ..progress import Progress

LOCAL = "local"


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("PASTA server", "run the work on a PASTA server (pasta serve) instead of this computer")
    group.add_argument(
        "--server",
        metavar="URL",
        help=f"the server, e.g. https://pasta.hospital.org:8000 (default: ${SERVER_VARIABLE} when set; "
        f"'{LOCAL}' runs here whatever it says); models are the server's, by name",
    )
    group.add_argument("--token", help=f"the server's token for you (default: ${TOKEN_VARIABLE})")


def server_of(args: argparse.Namespace) -> tuple | None:
    """``(url, token)`` when the command runs on a server, else None."""
    url = args.server if args.server is not None else os.environ.get(SERVER_VARIABLE, "")
    if not url or url == LOCAL:
        if args.token:
            from ..errors import PastaError

            raise PastaError("--token goes with --server URL (or PASTA_SERVER)")
        return None
    return url, args.token


def connect(server: tuple, action: str, options: object) -> object:
    """A client of the server, after checking that it answers, takes the token and can run the
    action with these options (one line and exit 2 otherwise, before any file is read)."""
    from ..actions.options import options_to_dict
    from ..errors import PastaError
    from ..tasks.jobs import ACTION_JOB
    from ..tasks.remote_jobs import remote_problem
    from ..tasks.server_client import ServerClient

    url, token = server
    client = ServerClient(url, token)
    problem = remote_problem(ACTION_JOB, {"action": action, "options": options_to_dict(options), "inputs": {}})
    if problem:
        raise PastaError(f"{problem}: run it without --server")
    names = [m["name"] for m in client.models()]
    model = getattr(options, "model", "") if action == "segment" else ""
    if model and model not in names:
        raise PastaError(f"the PASTA server at {client.url} has no model named {model!r} (it has: {', '.join(names) or 'none'})")
    return client


def run_on_server(
    client: object,
    action: str,
    options: object,
    inputs: object,
    progress: Progress,
    output: dict | None = None,
) -> tuple:
    """``(result, {name: Volume})`` of the action run on the server."""
    from ..tasks.remote import run_remote_action

    return run_remote_action(client.url, client.token, action, options, inputs, output, progress)
