"""``edge eval --clips DIR``: what the daemon would count on real footage, against labels.

Each clip runs through the daemon's own counting core (``FramePipeline``:
detector, two-stage tracker, quality-gated attributes) in media time, with the
daemon's defaults or the detector/tracking/attribute settings of ``--config``.
Scored against ``labels.json``::

    {"clip-name": {"visitors": 2, "female": 1, "male": 1, "faces_per_frame": 1 | null, "viewers": 1,
                   "people": 2,
                   "crossings": {"start": [0.5, 0], "end": [0.5, 1], "in_side": "left", "in": 1, "out": 0}}}

``clip-name`` is a video (or GIF) in DIR without its suffix. Per clip and in
total: visitors counted vs truth; visitors counted female / male / unknown vs
truth; where ``faces_per_frame`` is given, frame-level recall (faces the
tracker holds in a frame, capped at the truth) and the share of extra boxes;
where every visitor of a clip has the same labelled gender, how often a gender
named on a frame's describable faces is right; with attention on, the viewers
among the visitors and their attention time (against ``viewers`` where the
label gives it; ``edge.attention``); with people counting on, the people
(``edge.people``, as a window counts them) against ``people``, and the
crossings of the label's line against its ``in`` and ``out``. Counting uses no minimum cell:
it is an evaluation of the counter, not a publication.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2

from edge.analyzer import Analyzer
from edge.config.build import parse_typed
from edge.config.errors import ConfigError
from edge.media import VIDEO_SUFFIXES, MediaError, frames
from edge.people import PeopleTracker
from edge.people_cells import PeopleTally, count_people
from edge.people_config import LineConfig
from edge.pipeline import FramePipeline
from edge.tracker import Tracker, TrackerUpdate


class ClipsError(ValueError):
    """The clips folder or its labels are missing or malformed."""


@dataclass(frozen=True)
class CrossingLabel:
    """A counting line drawn for one clip, and how many crossed it each way."""

    line: LineConfig
    ins: int
    outs: int


@dataclass(frozen=True)
class ClipLabel:
    name: str
    visitors: int
    female: int
    male: int
    faces_per_frame: int | None
    viewers: int | None = None  # visitors who looked at the camera for attention.min_s, where labelled
    people: int | None = None  # everyone who passed, face or not, where labelled
    crossings: CrossingLabel | None = None


@dataclass(frozen=True)
class ClipScore:
    """One clip's counts against its labels (frame figures are None where not labelled)."""

    clip: str
    frames: int
    visitors: int
    visitors_truth: int
    female: int
    male: int
    unknown: int
    female_truth: int
    male_truth: int
    faces_truth: int | None  # labelled faces summed over frames
    faces_found: int | None  # tracked faces, each frame capped at its truth
    extra_boxes: int | None  # tracked faces beyond the truth
    boxes: int  # tracked faces summed over frames
    gender_named: int | None  # describable face-frames given a gender
    gender_right: int | None
    viewers: int | None = None  # None: attention off
    viewers_truth: int | None = None
    attention_s: float | None = None  # summed over the clip's visitors
    people: int | None = None  # None: people counting off
    people_truth: int | None = None
    people_with_face: int | None = None
    crossings: tuple[int, int] | None = None  # in, out over the label's line (None: none labelled)
    crossings_truth: tuple[int, int] | None = None

    @property
    def recall(self) -> float | None:
        return None if not self.faces_truth or self.faces_found is None else self.faces_found / self.faces_truth

    @property
    def extra_rate(self) -> float | None:
        if self.extra_boxes is None:
            return None
        return self.extra_boxes / self.boxes if self.boxes else 0.0

    @property
    def gender_accuracy(self) -> float | None:
        return None if not self.gender_named or self.gender_right is None else self.gender_right / self.gender_named


LABEL_KEYS = {"visitors", "female", "male", "faces_per_frame", "viewers", "people"}
OPTIONAL_KEYS = {"faces_per_frame", "viewers", "people"}  # null or absent: not labelled
LABELS_LAYOUT = (
    'expected labels.json mapping each clip\'s file name without suffix to {"visitors": N, "female": N, '
    '"male": N, "faces_per_frame": N or null, "viewers": N (optional), "people": N (optional), '
    '"crossings": {"start": [x, y], "end": [x, y], "in_side": "left" | "right", "in": N, "out": N} (optional)}'
)


def _crossings(raw: Any, where: str) -> CrossingLabel | None:
    if raw is None:
        return None
    counts = {k: raw.get(k) for k in ("in", "out")} if isinstance(raw, dict) else {}
    if not counts or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in counts.values()):
        raise ClipsError(f'{where}.crossings: expected {{..., "in": N, "out": N}}, got {raw!r}')
    try:
        line = parse_typed({k: v for k, v in raw.items() if k not in counts}, LineConfig, f"{where}.crossings")
    except ConfigError as exc:
        raise ClipsError(str(exc)) from None
    return CrossingLabel(line, int(raw["in"]), int(raw["out"]))


def read_clip_labels(folder: Path) -> list[tuple[Path, ClipLabel]]:
    """Clips named in ``labels.json`` with their files; errors name the clip and the key."""
    path = folder / "labels.json"
    if not folder.is_dir():
        raise ClipsError(f"{folder}: no such folder (expected video clips and a labels.json)")
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClipsError(f"{path} not found: {LABELS_LAYOUT}") from None
    except json.JSONDecodeError as exc:
        raise ClipsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise ClipsError(f"{path}: expected an object mapping clip names to labels")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    out = []
    for name, raw in sorted(doc.items()):
        if not isinstance(raw, dict) or not {"visitors", "female", "male"} <= set(raw):
            raise ClipsError(f"{path}: {name}: expected keys visitors, female, male (and faces_per_frame), got {raw!r}")
        values = {k: raw.get(k) for k in LABEL_KEYS}
        for key, value in values.items():
            if not (isinstance(value, int) and value >= 0) and not (key in OPTIONAL_KEYS and value is None):
                raise ClipsError(f"{path}: {name}.{key}: expected a count >= 0, got {value!r}")
        if name not in files:
            raise ClipsError(f"{path}: {name}: no video named {name}.* in {folder}")
        per_frame = values["faces_per_frame"]
        crossings = _crossings(raw.get("crossings"), f"{path}: {name}")
        label = ClipLabel(
            name,
            int(raw["visitors"]),
            int(raw["female"]),
            int(raw["male"]),
            per_frame,
            values["viewers"],
            values["people"],
            crossings,
        )
        out.append((files[name], label))
    return out


MakePeople = Callable[[LineConfig | None], PeopleTracker]


def score_clip(
    analyzer: Analyzer,
    make_tracker: Callable[[], Tracker],
    path: Path,
    label: ClipLabel,
    make_people: MakePeople | None = None,
) -> ClipScore:
    """Run one clip through a fresh tracker (and people tracker, where people are counted, with the
    label's line) in media time and score it."""
    fps = _fps(path)
    tracker = make_tracker()
    gate_px = tracker.min_face_px
    people = make_people(label.crossings.line if label.crossings else None) if make_people else None
    pipeline = FramePipeline(analyzer, tracker, people)
    tally = PeopleTally()
    visitors = female = male = unknown = 0
    n_frames = boxes = 0
    found = extra = 0
    named = right = 0
    attention = tracker.attention
    viewers, looked = 0, 0.0
    one_gender = (
        "female" if label.female == label.visitors > 0 else "male" if label.male == label.visitors > 0 else None
    )

    def settle(update: TrackerUpdate) -> None:
        nonlocal female, male, unknown, viewers, looked
        for ended in update.ended:
            looked += ended.attention_s or 0.0
            viewers += (ended.attention_s or 0.0) >= attention.min_s
            gender = ended.attributes.gender if ended.attributes else None
            female += gender == "female"
            male += gender == "male"
            unknown += gender is None

    index = -1
    for index, frame in enumerate(frames(path)):
        result = pipeline.process(frame.rgb, index / fps)
        update = result.update
        visitors += len(update.new_visitors)
        settle(update)
        count_people(tally, update, result.people)
        n_frames += 1
        boxes += update.active
        if label.faces_per_frame is not None:
            found += min(update.active, label.faces_per_frame)
            extra += max(0, update.active - label.faces_per_frame)
        if one_gender is not None and analyzer.attributes.switches.gender:
            describable = [
                d
                for d in result.detections
                if d.score >= tracker.high_score and min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= gate_px
            ]
            for attrs in analyzer.attributes.estimate(frame.rgb, describable):
                if attrs.gender is not None:
                    named += 1
                    right += attrs.gender == one_gender
    flushed = pipeline.flush((index + 1) / fps)
    settle(flushed.update)
    count_people(tally, flushed.update, flushed.people)
    per_frame = label.faces_per_frame
    crossings = label.crossings
    return ClipScore(
        clip=label.name,
        frames=n_frames,
        visitors=visitors,
        visitors_truth=label.visitors,
        female=female,
        male=male,
        unknown=unknown,
        female_truth=label.female,
        male_truth=label.male,
        faces_truth=None if per_frame is None else per_frame * n_frames,
        faces_found=None if per_frame is None else found,
        extra_boxes=None if per_frame is None else extra,
        boxes=boxes,
        gender_named=named if one_gender is not None else None,
        gender_right=right if one_gender is not None else None,
        viewers=viewers if attention.enabled else None,
        viewers_truth=label.viewers,
        attention_s=round(looked, 1) if attention.enabled else None,
        people=len(tally.dwell) if people is not None else None,
        people_truth=label.people,
        people_with_face=tally.with_face if people is not None else None,
        crossings=(tally.ins, tally.outs) if people is not None and crossings else None,
        crossings_truth=(crossings.ins, crossings.outs) if crossings else None,
    )


def _fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if 0.5 <= fps <= 240 else 25.0  # files without a usable rate: a common camera rate


def total(scores: list[ClipScore]) -> ClipScore:
    """All clips together; a frame-level figure sums only the clips that label it."""

    def add(name: str) -> int:
        return sum(getattr(s, name) for s in scores)

    def add_labelled(name: str) -> int | None:
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        return sum(values) if values else None

    return ClipScore(
        clip="total",
        frames=add("frames"),
        visitors=add("visitors"),
        visitors_truth=add("visitors_truth"),
        female=add("female"),
        male=add("male"),
        unknown=add("unknown"),
        female_truth=add("female_truth"),
        male_truth=add("male_truth"),
        faces_truth=add_labelled("faces_truth"),
        faces_found=add_labelled("faces_found"),
        extra_boxes=add_labelled("extra_boxes"),
        boxes=sum(s.boxes for s in scores if s.faces_truth is not None),
        gender_named=add_labelled("gender_named"),
        gender_right=add_labelled("gender_right"),
        viewers=add_labelled("viewers"),
        viewers_truth=add_labelled("viewers_truth"),
        attention_s=None if any(s.attention_s is None for s in scores) else round(add("attention_s"), 1),
        people=add_labelled("people"),
        people_truth=add_labelled("people_truth"),
        people_with_face=add_labelled("people_with_face"),
    )


def as_dict(score: ClipScore) -> dict[str, Any]:
    return {
        **asdict(score),
        "recall": score.recall,
        "extra_rate": score.extra_rate,
        "gender_accuracy": score.gender_accuracy,
    }


def _viewers(s: ClipScore) -> str:
    if s.viewers is None:
        return "-"
    return str(s.viewers) if s.viewers_truth is None else f"{s.viewers}/{s.viewers_truth}"


def _people(s: ClipScore) -> str:
    if s.people is None:
        return "-"
    return str(s.people) if s.people_truth is None else f"{s.people}/{s.people_truth}"


def _crossed(s: ClipScore) -> str:
    if s.crossings is None:
        return "-"
    got = f"{s.crossings[0]}/{s.crossings[1]}"
    return got if s.crossings_truth is None else f"{got} ({s.crossings_truth[0]}/{s.crossings_truth[1]})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(scores: list[ClipScore]) -> str:
    head = (
        f"{'clip':<34} {'frames':>6}  {'visitors':>8}  {'female':>7}  {'male':>7}  {'unknown':>7}  "
        f"{'recall':>7}  {'extra':>6}  {'gender right (n)':>16}  {'viewers':>7}  {'looked s':>8}  "
        f"{'people':>6}  {'w/ face':>7}  {'in/out':>11}"
    )
    lines = [head, "-" * len(head)]
    for s in [*scores, total(scores)]:
        gender = "-" if s.gender_accuracy is None else f"{_pct(s.gender_accuracy)} ({s.gender_named})"
        if s.gender_named == 0:
            gender = "none named"
        lines.append(
            f"{s.clip[:34]:<34} {s.frames:>6}  {f'{s.visitors}/{s.visitors_truth}':>8}  "
            f"{f'{s.female}/{s.female_truth}':>7}  {f'{s.male}/{s.male_truth}':>7}  {s.unknown:>7}  "
            f"{_pct(s.recall):>7}  {_pct(s.extra_rate):>6}  {gender:>16}  {_viewers(s):>7}  "
            f"{'-' if s.attention_s is None else f'{s.attention_s:.1f}':>8}  "
            f"{_people(s):>6}  {'-' if s.people_with_face is None else s.people_with_face:>7}  {_crossed(s):>11}"
        )
    lines.append("")
    lines.append(
        "counted/truth; recall: tracked faces per frame (capped at the labelled count) over labelled faces; "
        "extra: tracked faces beyond the label over all tracked faces; gender right: per describable face "
        "and frame, clips whose visitors share one gender; viewers: visitors who looked at the camera for "
        "attention.min_s (counted/truth where labelled), looked s: their visitors' attention time; people: "
        "everyone who passed, face or not (counted/truth where labelled), w/ face: of them, seen with a face; "
        "in/out: crossings of the label's line (truth in brackets)."
    )
    return "\n".join(lines) + "\n"


def run(
    make_analyzer: Callable[[], Analyzer],
    make_tracker: Callable[[], Tracker],
    folder: Path,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
    make_people: MakePeople | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    clips = read_clip_labels(folder)
    analyzer = make_analyzer()
    scores, failed = [], 0
    for path, label in clips:
        try:
            scores.append(score_clip(analyzer, make_tracker, path, label, make_people))
        except MediaError as exc:
            err.write(f"edge eval: {exc}\n")
            failed += 1
    if as_json:
        out.write(json.dumps({"clips": [as_dict(s) for s in scores], "total": as_dict(total(scores))}) + "\n")
    else:
        out.write(table(scores))
    return 1 if failed else 0
