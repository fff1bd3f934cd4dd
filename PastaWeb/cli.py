"""``pasta web``: PASTA in a browser (registered as a ``pasta.commands`` entry point)."""

from __future__ import annotations

from pastacore.cli.shared import add_listen_arguments, add_upload_limit_argument, check_upload_limit

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(sub):
    p = sub.add_parser(
        "web",
        help="PASTA in a browser: segment, draw a box to synthesise, edit and export, on real Slicer MRML",
        description="Serves the PASTA web application (trame-slicer) and prints its URL. One server holds one scene: "
        "every browser connected to it sees the same scene. Research use only, not for diagnosis.",
    )
    p.add_argument("image", nargs="?", metavar="IMAGE_OR_SCENE", help="a CT (NIfTI, NRRD, DICOM folder) or a .mrb to open")
    add_listen_arguments(p, port=8080)
    p.add_argument("--token", help="access token; required (or generated and printed) when --host is not local")
    p.add_argument("--data", metavar="DIR", help="the folder the file picker shows (default: IMAGE's folder, else here)")
    p.add_argument(
        "--out",
        metavar="DIR",
        default="pasta-web-output",
        help="where exported reports and saved scenes are written (default ./pasta-web-output)",
    )
    add_upload_limit_argument(p)
    p.add_argument("--3d", dest="threed", action="store_true", help="also show a 3D view")
    p.add_argument(
        "--server",
        metavar="URL",
        help="run segmentation, synthesis and reports on a PASTA server (pasta serve) instead of this machine "
        "(default: $PASTA_SERVER when set); the model list is the server's",
    )
    p.add_argument("--server-token", metavar="TOKEN", help="the PASTA server's token (default: $PASTA_TOKEN)")
    p.set_defaults(func=run)


def run(args):
    import os
    import sys
    from pathlib import Path

    from pastacore.errors import PastaError

    if not os.environ.get("DISPLAY"):  # render off-screen through EGL without first trying an X server
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    try:
        from .app import serve
    except ImportError as exc:
        raise PastaError(f"pasta web needs the 'web' extra ({exc.name} is missing): pip install 'pasta-slicer[web]'") from None
    from pastacore.listening import check_listen

    check_listen(args.host, args.port)
    if args.image and not Path(args.image).exists():
        raise PastaError(f"{args.image} does not exist")
    if args.data and not Path(args.data).is_dir():
        raise PastaError(f"the data folder {args.data} does not exist")
    check_upload_limit(args)
    runner = compute_runner(args)
    token = args.token
    if args.host not in LOCAL_HOSTS and not token:
        from .access import new_token

        token = new_token()

    def ready(port):
        query = f"?token={token}" if token else ""
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(f"PASTA web is ready: http://{shown}:{port}/index.html{query}", flush=True)
        if args.host not in LOCAL_HOSTS:
            print(
                "Anyone with this URL (and its token) can use the scene; every browser shares one scene.",
                file=sys.stderr,
                flush=True,
            )

    serve(
        args.image,
        args.host,
        args.port,
        args.data,
        args.out,
        token,
        args.max_upload_mb,
        args.threed,
        on_ready=ready,
        quiet=not args.debug,
        runner=runner,
    )
    return 0


def compute_runner(args):
    """The task process, or the PASTA server of ``--server`` (checked now: it answers and takes the
    token); every controller of the page follows it, and the model list is the server's."""
    import os

    from pastacore.tasks import ProcessRunner
    from pastacore.tasks.server_client import SERVER_VARIABLE, TOKEN_VARIABLE, normalized_url
    from PastaSlicerLib.controllers.compute import SERVER, ComputeRunner, ComputeSetting, check_server, use_setting_source

    url = args.server if args.server is not None else os.environ.get(SERVER_VARIABLE, "")
    if not url or url == "local":
        return ProcessRunner()
    token = args.server_token or os.environ.get(TOKEN_VARIABLE, "")
    setting = ComputeSetting(SERVER, normalized_url(url), token)
    check_server(setting.url, setting.token)
    use_setting_source(lambda: setting)
    return ComputeRunner(ProcessRunner(), lambda: setting)
