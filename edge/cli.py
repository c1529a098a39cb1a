"""The ``edge`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge import __version__
from edge.models import DEFAULT_DIR, Manifest, ModelError


def _models(args: argparse.Namespace) -> int:
    """Verify every model against the manifest, load it, and print what it is."""
    manifest = Manifest(args.dir)
    rows = []
    for key, entry in manifest.models.items():
        for variant in ("int8", "float"):
            info, model = manifest.load(key, variant, backend=args.backend, threads=1)
            rows.append((key + (" (opt-in)" if entry.get("opt_in") else ""), variant, info.path.name,
                         "x".join(str(d) for d in model.input.shape), str(model.input.dtype), model.backend.name))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  sha256 ok\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge", description="Edge-device face analytics runtime")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="verify and load the shipped models (checksums against the manifest)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="models folder (default: %(default)s)")
    p.add_argument("--backend", default="auto", help="auto, litert, tflite_runtime or tensorflow")
    p.set_defaults(func=_models)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ModelError as exc:
        sys.stderr.write(f"edge: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
