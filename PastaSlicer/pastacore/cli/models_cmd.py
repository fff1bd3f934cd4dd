"""``pasta models``: list, import, verify and remove installed models."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("models", help="manage installed models (list, import, verify, remove)")
    p.add_argument("--store", help="model folder (default: the per-user cache)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list installed models")
    imp = actions.add_parser("import", help="import a weight file or nnU-Net result folder you downloaded")
    imp.add_argument("path")
    imp.add_argument("--name", help="name to install under (default: from the manifest or the file name)")
    imp.add_argument("--overwrite", action="store_true", help="replace an installed model of the same name")
    ver = actions.add_parser("verify", help="check installed files against their SHA256")
    ver.add_argument("name", nargs="?", help="one model (default: all)")
    rem = actions.add_parser("remove", help="delete an installed model")
    rem.add_argument("name")
    p.set_defaults(func=run)


def run(args):
    from ..errors import PastaError
    from ..models.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        models = store.list()
        if not models:
            print(f"no models installed (store: {store.root})")
        for m in models:
            where = "built in" if m.builtin else str(m.path)
            print(f"{m.name:<24} {m.version:<8} {m.task:<13} {where}")
    elif args.action == "import":
        model = store.import_file(args.path, name=args.name, overwrite=args.overwrite)
        print(f"imported {model.name} ({len(model.files)} file(s)) into {model.path}")
    elif args.action == "verify":
        names = [args.name] if args.name else [m.name for m in store.list()]
        bad = 0
        for name in names:
            ok, problems = store.verify(name)
            print(f"{name}: {'ok' if ok else '; '.join(problems)}")
            bad += not ok
        if bad:
            raise PastaError(f"{bad} model(s) failed verification")
    elif args.action == "remove":
        store.remove(args.name)
        print(f"removed {args.name}")
