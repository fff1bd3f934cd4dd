"""``pasta serve``: one machine with GPUs runs PASTA for Slicer, the browser app and the command line
of other machines (:mod:`pastacore.server`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .shared import add_device_argument, add_listen_arguments, add_upload_limit_argument, check_upload_limit, options_from_args

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..deps import DEVICES

    p = sub.add_parser(
        "serve",
        help="serve PASTA to other machines: segment, synth and report jobs on this machine's GPUs",
        description="Runs a PASTA server: clients (pasta segment|synth|report --server URL, the Slicer hub's "
        "'a PASTA server' setting, pasta web --server URL) send volumes and get the results back; the jobs run "
        "on Dask workers of this machine (one per GPU) or of a running scheduler. Prints 'PASTA server ready: URL' "
        "once it answers. Needs the 'server' extra. Research use only, not for diagnosis.",
    )
    add_listen_arguments(p, port=8000)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", help="the token clients must send (at least 16 characters); needed on a non-local host")
    who.add_argument("--tokens", metavar="FILE", help="a file of tokens, one 'NAME TOKEN' per line: each sees only its own jobs")
    add_upload_limit_argument(p)
    p.add_argument("--workers", type=int, help="workers of the local cluster (default: one per GPU, else by CPU cores)")
    p.add_argument(
        "--scheduler",
        default="local",
        help="local (default: a Dask cluster on this machine) or a running scheduler of GPU workers, e.g. tcp://host:8786",
    )
    p.add_argument("--store", metavar="DIR", help="the model store clients choose from (default: this user's store)")
    add_device_argument(p, f"{', '.join(DEVICES)}: where the workers run the networks (default auto)")
    p.add_argument(
        "--keep-minutes", type=float, default=60.0, help="results not downloaded are deleted after this many minutes (default 60)"
    )
    p.add_argument("--ssl-keyfile", metavar="KEY.pem", help="TLS private key (with --ssl-certfile: serve https://)")
    p.add_argument("--ssl-certfile", metavar="CERT.pem", help="TLS certificate (chain) for the server's host name")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> object:
    """The server's settings from the parsed arguments, checked before anything starts."""
    from pathlib import Path

    from ..deps import check_device
    from ..errors import PastaError
    from ..server.serve import ServerSettings

    check_upload_limit(args)
    if args.keep_minutes <= 0:
        raise PastaError("--keep-minutes must be positive")
    if args.workers is not None and args.workers < 1:
        raise PastaError("--workers must be at least 1")
    if args.scheduler != "local" and "://" not in args.scheduler:
        raise PastaError(f"--scheduler takes local or a scheduler address such as tcp://host:8786, got {args.scheduler!r}")
    if args.scheduler != "local" and args.workers is not None:
        raise PastaError("--workers sizes the local cluster; a running scheduler has the workers it has")
    if bool(args.ssl_keyfile) != bool(args.ssl_certfile):
        raise PastaError("TLS needs both --ssl-keyfile and --ssl-certfile")
    for path in (args.ssl_keyfile, args.ssl_certfile):
        if path and not Path(path).is_file():
            raise PastaError(f"{path} does not exist")
    if args.store and not Path(args.store).is_dir():
        raise PastaError(f"the model store {args.store} does not exist (create it, or import models with 'pasta models --store')")
    check_device(args.device)
    return options_from_args(ServerSettings, args)


def run(args: argparse.Namespace) -> int:
    import os

    from ..listening import check_listen
    from ..native import stderr_shown
    from ..server.access import server_tokens
    from ..server.serve import print_ready, require_server_extra, serve

    require_server_extra()
    settings = settings_from(args)
    check_listen(settings.host, settings.port)
    tokens, generated = server_tokens(settings.host, args.token, args.tokens)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if len(tokens):
        say(f"clients need a token ({len(tokens)} accepted)")
    if args.tokens and os.name == "posix" and os.stat(args.tokens).st_mode & 0o077:
        say(f"warning: other users of this machine can read {args.tokens}: chmod 600 it")
    with stderr_shown():
        serve(settings, tokens, say, lambda url: print_ready(url, generated, settings.host))
    return 0
