"""``edge analyze``: faces and attributes for images, folders and video files."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.analyzer import Analyzer
from edge.attention import AttentionConfig, looking
from edge.attributes import DESCRIBE_MIN_FACE_PX, MIN_GENDER_SCORE, AttributesConfig, described
from edge.commands.options import Subparsers, add_analyzer_options, add_command, analyzer_config
from edge.media import MediaError, expand, frames
from edge.memory import FreeMemory
from edge.people_config import PeopleConfig
from edge.records import Face, PersonDetection

log = logging.getLogger(__name__)


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "analyze", "faces and attributes in images, folders and video files")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image or frame")
    p.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT_DIR",
        help="write pictures with boxes and labels here (local debugging only: they show faces)",
    )
    p.add_argument("--every", type=int, default=1, help="analyse every Nth video frame (default: 1)")
    p.add_argument(
        "--describe-min-face",
        type=non_negative_float,
        default=DESCRIBE_MIN_FACE_PX,
        metavar="PX",
        help="smaller faces (shorter box side) are found but not described: null attributes "
        f"(default: {DESCRIBE_MIN_FACE_PX}, as the daemon's attributes.min_face_px; 0: every face)",
    )
    p.add_argument(
        "--min-gender-score",
        type=non_negative_float,
        default=MIN_GENDER_SCORE,
        metavar="SCORE",
        help=f"a gender scored under this is not named: null (default: {MIN_GENDER_SCORE}, as the daemon's "
        "attributes.min_gender_score; 0: always named)",
    )
    p.add_argument(
        "--pose",
        action="store_true",
        help="also each face's head pose (yaw, pitch, roll in degrees) and whether it looks at the camera by the "
        "default attention cone (+-22.5 deg, no offset); about 2 ms a face",
    )
    p.add_argument(
        "--people",
        action="store_true",
        help="also everyone in the picture, face or not: person boxes (the daemon's person detector)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG",
        help="a daemon config: --annotate then draws its people.line (arrow: the way in) and people.zones, "
        "and --people uses its people.score_threshold",
    )
    add_analyzer_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    naming = Naming(args.describe_min_face, args.min_gender_score)
    people = PeopleConfig()
    if args.config is not None:
        from edge.settings import load_config

        people = load_config(args.config).people
    analyzer = Analyzer(replace(analyzer_config(args), pose=args.pose, people=args.people))
    return analyze_paths(
        analyzer,
        args.paths,
        args.json,
        args.annotate,
        args.every,
        naming=naming,
        layout=people if args.config else None,
        person_threshold=people.score_threshold,
    )


def non_negative_float(text: str) -> float:
    """An option's number, 0 or more (argparse adds the option's name to the refusal)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


@dataclass(frozen=True)
class Naming:
    """What `edge analyze` says of each face, by the daemon's rules for a face seen once
    (``edge.attributes.described``): faces under ``min_face_px`` are found, not described; a gender
    under ``min_gender_score`` is not named. Both 0: every estimate as the models give it."""

    min_face_px: float = DESCRIBE_MIN_FACE_PX
    min_gender_score: float = MIN_GENDER_SCORE

    def apply(self, face: Face) -> Face:
        x1, y1, x2, y2 = face.detection.box
        return Face(
            face.detection, described(face.attributes, min(x2 - x1, y2 - y1), self.min_face_px, self.min_gender_score)
        )


# Whether a face looks at the camera, for a photo: the daemon's default cone, on one pose (no track).
PHOTO_CONE = AttentionConfig()


def face_json(face: Face, switches: AttributesConfig, pose: bool = False) -> dict:
    """A face's record: every attribute switched on has its key, null where it was not judged;
    with ``pose``, the head pose (null where the mesh found no face) and ``looking``."""
    d, a = face.detection, face.attributes
    out: dict = {"box": [round(v, 1) for v in d.box], "score": round(d.score, 4)}
    if pose:
        p = d.pose
        out["pose"] = None if p is None else {"yaw": p.yaw, "pitch": p.pitch, "roll": p.roll}
        out["looking"] = looking(p, PHOTO_CONE)

    def score(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    if switches.age:
        out["age"] = None if a.age is None else round(a.age, 1)
    if switches.gender:
        out["gender"], out["gender_score"] = a.gender, score(a.gender_score)
    if switches.expression:
        out["expression"], out["expression_score"] = a.expression, score(a.expression_score)
    if switches.ethnicity:
        out["ethnicity"], out["ethnicity_score"] = a.ethnicity, score(a.ethnicity_score)
    return out


def label(face: Face) -> str:
    """One face for a person: ``face 0.97, 25y, female, happy`` (what was not judged is left out)."""
    a = face.attributes
    parts = [f"face {face.detection.score:.2f}"]
    if a.age is not None:
        parts.append(f"{a.age:.0f}y")
    if a.gender is not None:
        parts.append(a.gender)
    if a.expression is not None:
        parts.append(a.expression)
    if a.ethnicity is not None:
        parts.append(a.ethnicity)
    p = face.detection.pose
    if p is not None:
        sight = "looking" if looking(p, PHOTO_CONE) else "not looking"
        parts.append(f"yaw {p.yaw:+.0f} pitch {p.pitch:+.0f} roll {p.roll:+.0f} deg ({sight})")
    return ", ".join(parts)


def annotate(
    rgb: np.ndarray,
    faces: list[Face],
    path: Path,
    persons: Sequence[PersonDetection] = (),
    layout: PeopleConfig | None = None,
) -> None:
    """Boxes and labels drawn on a copy of the frame: for a person debugging locally, or setting up
    a counting line and zones (``layout``: drawn as the daemon reads them)."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(img.shape[:2]) / 500))
    if layout is not None:
        draw_layout(img, layout, thick)
    for person in persons:
        x1, y1, x2, y2 = (int(round(v)) for v in person.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (255, 160, 0), thick)
        cv2.putText(
            img,
            f"person {person.score:.2f}",
            (x1 + 2, y2 - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45 * thick,
            (255, 160, 0),
            thick,
            cv2.LINE_AA,
        )
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.detection.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 220, 0), thick)
        cv2.putText(
            img,
            label(face),
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45 * thick,
            (0, 220, 0),
            thick,
            cv2.LINE_AA,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise MediaError(f"{path}: could not write the annotated image")


def draw_layout(img: np.ndarray, layout: PeopleConfig, thick: int) -> None:
    """The counting line (an arrow from its middle points to the "in" side) and the zones."""
    h, w = img.shape[:2]

    def px(p: tuple[float, float]) -> tuple[int, int]:
        return round(p[0] * (w - 1)), round(p[1] * (h - 1))

    for name, polygon in layout.zones:
        pts = np.array([px(p) for p in polygon], dtype=np.int32)
        cv2.polylines(img, [pts], True, (0, 200, 255), thick, cv2.LINE_AA)
        at = (int(pts[0][0]) + 4 * thick, int(pts[0][1]) + 16 * thick)  # inside the zone's first corner
        cv2.putText(img, name, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (0, 200, 255), thick, cv2.LINE_AA)
    line = layout.counting_line
    if line is None:
        return
    a, b = px(line.a), px(line.b)
    cv2.line(img, a, b, (0, 0, 255), 2 * thick, cv2.LINE_AA)
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = max(math.hypot(dx, dy), 1e-9)
    sign = 1.0 if line.in_side == "right" else -1.0  # (-dy, dx) is the right of a -> b on screen (y down)
    normal = (-sign * dy / length, sign * dx / length)
    reach = 0.08 * max(h, w)
    tip = (round(mid[0] + normal[0] * reach), round(mid[1] + normal[1] * reach))
    cv2.arrowedLine(img, (round(mid[0]), round(mid[1])), tip, (0, 0, 255), 2 * thick, cv2.LINE_AA, tipLength=0.3)
    at = (tip[0] - 24 * thick, tip[1] + 4 * thick)  # beside the arrow's tip
    cv2.putText(img, "in", at, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thick, (0, 0, 255), thick, cv2.LINE_AA)


def person_json(person: PersonDetection) -> dict:
    return {"box": [round(v, 1) for v in person.box], "score": round(person.score, 4)}


def analyze_paths(
    analyzer: Analyzer,
    paths: list[Path],
    as_json: bool,
    annotate_dir: Path | None,
    every: int,
    out: TextIO | None = None,
    err: TextIO | None = None,
    naming: Naming = Naming(),
    layout: PeopleConfig | None = None,
    person_threshold: float = PeopleConfig().score_threshold,
) -> int:
    """Analyse every input; unreadable ones are reported and skipped. Exit 1 if any failed."""
    out, err = out or sys.stdout, err or sys.stderr
    failed = 0
    memory = FreeMemory()
    for item in expand(paths):
        memory.release()  # the last input's buffers, before this one's (photos differ in size)
        if isinstance(item, MediaError):
            err.write(f"edge analyze: {item}\n")
            failed += 1
            continue
        try:
            for frame in frames(item, every):
                faces = [naming.apply(f) for f in analyzer.analyze(frame.rgb)]
                t = analyzer.last_timings
                persons: tuple[PersonDetection, ...] = ()
                people_ms = 0.0
                if analyzer.person_detector is not None:
                    t0 = time.perf_counter()
                    persons = tuple(p for p in analyzer.persons(frame.rgb) if p.score >= person_threshold)
                    people_ms = (time.perf_counter() - t0) * 1000.0
                h, w = frame.rgb.shape[:2]
                if as_json:
                    record = {
                        "source": frame.source,
                        "frame": frame.index,
                        "width": w,
                        "height": h,
                        "faces": [face_json(f, analyzer.config.attributes, analyzer.config.pose) for f in faces],
                        "timings_ms": {
                            "detect": round(t.detect_ms, 2),
                            "pose": round(t.pose_ms, 2),
                            "attributes": round(t.attributes_ms, 2),
                            "total": round(t.total_ms + people_ms, 2),
                        },
                    }
                    if analyzer.person_detector is not None:
                        record["people"] = [person_json(p) for p in persons]
                        record["timings_ms"]["people"] = round(people_ms, 2)
                    out.write(json.dumps(record) + "\n")
                else:
                    where = frame.source if frame.index == 0 else f"{frame.source}#{frame.index}"
                    summary = "; ".join(label(f) for f in faces) or "no faces"
                    people = "" if analyzer.person_detector is None else f", {len(persons)} person(s)"
                    out.write(f"{where}: {len(faces)} face(s) [{summary}]{people} in {t.total_ms + people_ms:.1f} ms\n")
                out.flush()
                if annotate_dir is not None:
                    name = item.stem + (f"_f{frame.index:06d}" if frame.index else "") + "_annotated.jpg"
                    annotate(frame.rgb, faces, annotate_dir / name, persons, layout)
        except MediaError as exc:
            err.write(f"edge analyze: {exc}\n")
            failed += 1
    return 1 if failed else 0
