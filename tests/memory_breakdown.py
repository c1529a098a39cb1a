"""Where ``edge analyze``'s memory goes: RSS after each step of analysing photos, split into the
process's own pages (anonymous) and mapped files (libraries, models).

    .venv/bin/python tests/memory_breakdown.py PHOTO [PHOTO ...]

Each step runs in this one process in the order ``edge analyze`` takes it, so a row's increase is
what that step adds. Mapped-file pages depend on how the page cache holds the libraries (a file
just written by pip can be mapped in larger pieces than one read from disk), so the anonymous
column is the one that moves with our code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    args = parser.parse_args()

    from edge.memory import rss_mb

    rows: list[tuple[str, dict[str, float]]] = [("python", rss_mb())]
    for module in ("numpy", "cv2", "edge.analyzer", "ai_edge_litert.interpreter"):
        importlib.import_module(module)
        rows.append((f"import {module}", rss_mb()))

    from edge.attributes import AttributeEstimator
    from edge.detector import FaceDetector
    from edge.media import read_image
    from edge.memory import FreeMemory
    from edge.models import DEFAULT_DIR, Manifest
    from edge.preprocess import DEFAULT_VIEWS

    manifest = Manifest(DEFAULT_DIR)
    detector = FaceDetector(manifest)
    rows.append(("detector loaded (512, int8)", rss_mb()))
    attributes = AttributeEstimator(manifest, views=DEFAULT_VIEWS)
    rows.append(("age/gender and expression loaded", rss_mb()))
    memory = FreeMemory()
    for path in args.photos:
        memory.release()
        rgb = read_image(path)
        rows.append((f"{path.name} decoded {rgb.shape[1]}x{rgb.shape[0]}", rss_mb()))
        faces = detector.detect(rgb)
        rows.append((f"{path.name} detected ({len(faces)} faces)", rss_mb()))
        attributes.estimate(rgb, faces)
        rows.append((f"{path.name} attributes", rss_mb()))
        del rgb

    sys.stdout.write(f"{'step':45s} {'RSS':>7} {'+':>6} {'anon':>7} {'file':>7} {'peak':>7}\n")
    last = 0.0
    for name, m in rows:
        rss = m.get("VmRSS", 0.0)
        sys.stdout.write(
            f"{name:45s} {rss:7.1f} {rss - last:+6.1f} {m.get('RssAnon', 0):7.1f} {m.get('RssFile', 0):7.1f} "
            f"{m.get('VmHWM', 0):7.1f}\n"
        )
        last = rss
    return 0


if __name__ == "__main__":
    sys.exit(main())
