"""``edge models``: verify every shipped model against the manifest, load it, and say what it is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands.options import Subparsers, add_command
from edge.models import DEFAULT_DIR, MISSING_HINT, Manifest


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "models", "verify and load the shipped models (checksums against the manifest)")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_DIR, help="models folder (default: %(default)s)")
    p.add_argument("--backend", default="auto", help="auto, litert, tflite_runtime or tensorflow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify every model against the manifest, load it, and print what it is.

    An installed package carries only the int8 models: a float32 file that is absent is listed as
    such (with where to get it), a file that is present but corrupt still fails.
    """
    manifest = Manifest(args.model_dir)
    rows = []
    missing = []
    for key, entry in manifest.models.items():
        for variant in ("int8", "float"):
            name = key + (" (opt-in)" if entry.get("opt_in") else "")
            if variant == "float" and not manifest.has(key, variant):
                missing.append(key)
                rows.append((name, variant, manifest.file_name(key, variant), "-", "-", "-", "not installed"))
                continue
            info, model = manifest.load(key, variant, backend=args.backend, threads=1)
            shape = "x".join(str(d) for d in model.input.shape)
            rows.append((name, variant, info.path.name, shape, str(model.input.dtype), model.backend.name, "sha256 ok"))
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    if missing:
        sys.stdout.write(f"float32 models not installed ({', '.join(missing)}): {MISSING_HINT}\n")
    return 0
