"""The device's configuration: the root schema that assembles every section.

Sections are declared beside what they configure where that is one stage (a source or sink
plugin declares its own); the rest are here. ``load_config`` reads the YAML file once at
start-up; the result is passed to what needs it (no global config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.attributes import DESCRIBE_MIN_FACE_PX, MIN_GENDER_SCORE
from edge.config import load_typed, parse_typed
from edge.config.fields import (
    POSITIVE_S,
    Check,
    Ctx,
    Invalid,
    boolean,
    choice,
    derived,
    file_path,
    integer,
    leaf,
    number,
    optional,
    probe,
    registry_field,
    required,
    section,
    text,
)
from edge.models import DEFAULT_DIR as DEFAULT_MODEL_DIR
from edge.preprocess import DEFAULT_VIEWS, VIEW_COUNTS
from edge.sinks import SINK_TYPES, SinkConfig
from edge.sources import SOURCE_TYPES, SourceConfig

DEFAULT_STATE_DIR = Path("~/.local/state/edge")


@dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    dir: Path = leaf(DEFAULT_MODEL_DIR, file_path("a folder holding the .tflite models"))
    variant: str = leaf("int8", choice("int8", "float"))
    detector_input: int = leaf(512, choice(512, 320))


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    backend: str = leaf("auto", choice("auto", "litert", "tflite_runtime", "tensorflow"))
    threads: int | None = leaf(None, optional(integer("a thread count from 1 to 256", lo=1, hi=256), "all cores"))


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """``score_threshold`` starts a track; weaker detections down to ``weak_threshold`` only
    continue one. ``min_face_px`` is the smallest face (shorter side, frame pixels) the
    detection plan must find; smaller values cost more enlarged tiles (0: one full-frame pass)."""

    score_threshold: float = leaf(0.5, number("a score above 0, at most 1", lo=0, hi=1, lo_open=True))
    weak_threshold: float = leaf(0.25, number("a score between 0 and 1", lo=0, hi=1))
    min_face_px: int = leaf(20, integer("a face size in pixels >= 0", lo=0))
    # Frames between searches of the same tile for small faces: 1 + tiles / interval passes a frame.
    tile_interval: int = leaf(3, integer("a number of frames >= 1", lo=1))


@dataclass(frozen=True, kw_only=True)
class AttributesConfig:
    """Which estimates run. Ethnicity is opt-in: inferring it is restricted in some
    jurisdictions (e.g. EU AI Act Art. 5(1)(g))."""

    age: bool = leaf(True, boolean())
    gender: bool = leaf(True, boolean())
    expression: bool = leaf(True, boolean())
    ethnicity: bool = leaf(False, boolean())
    # The quality gate: smaller faces are counted but not described (their visitor lands in
    # `unknown`); measured in models/README.md "Attribute accuracy against face size".
    min_face_px: int = leaf(DESCRIBE_MIN_FACE_PX, integer("a face size in pixels >= 0", lo=0))
    # A visitor's gender is published only when its kept estimates agree (three quarters name it)
    # and one of them reaches this score, or three of them average 0.65 (edge.tracker.agreed_gender);
    # otherwise it stays unknown rather than a coin toss (one estimate at >= 0.8: 93-99% right).
    min_gender_score: float = leaf(MIN_GENDER_SCORE, number("a score between 0 and 1", lo=0, hi=1))
    # An estimate near a decision (gender 0.5 or min_gender_score, the top two expressions) is the mean
    # over this many slightly shifted and scaled crops of the face, so that box jitter (frame to frame,
    # int8 against float) moves it less; the others use the box alone (edge.attributes.VIEW_MARGINS).
    views: int = leaf(DEFAULT_VIEWS, choice(*VIEW_COUNTS))


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    iou_threshold: float = leaf(0.3, number("an overlap between 0 (exclusive) and 1", lo=0, hi=1, lo_open=True))
    max_missed_s: float = leaf(1.0, number(POSITIVE_S, lo=0, lo_open=True))
    min_visitor_s: float = leaf(1.0, number("a number of seconds >= 0", lo=0))
    min_hits: int = leaf(3, integer("a detection count >= 1", lo=1))
    best_observations: int = leaf(3, integer("an observation count >= 1", lo=1))


def _age_brackets(v: Any, ctx: Ctx) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise Invalid
    if any(not isinstance(a, int) or isinstance(a, bool) for a in v) or v[0] != 0:
        raise Invalid
    if any(b <= a for a, b in zip(v, v[1:])):
        raise Invalid
    return tuple(v)


@dataclass(frozen=True, kw_only=True)
class AggregationConfig:
    """Counting windows. ``window_s`` divides a day so windows align to midnight
    on every device; cells under ``min_cell`` visitors are suppressed."""

    window_s: int = leaf(
        60,
        integer(
            "a positive whole number of seconds that divides 86400 (e.g. 60, 300, 900, 3600)",
            lo=1,
            also=lambda s: 86400 % s == 0,
        ),
    )
    min_cell: int = leaf(5, integer("a visitor count >= 1", lo=1))
    age_brackets: tuple[int, ...] = leaf(
        (0, 18, 25, 35, 45, 55, 65), Check("a list of strictly increasing whole ages starting at 0", _age_brackets)
    )
    # How often the open window's counts so far are saved: an unclean stop loses at most this much.
    checkpoint_s: float = leaf(10.0, number("a number of seconds > 0", lo=0, lo_open=True))


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when several).
    env = os.environ.get("STATE_DIRECTORY", "")
    first = env.split(":")[0]
    return Path(first) if first else DEFAULT_STATE_DIR.expanduser()


_DEVICE_ID = text(
    "1 to 64 letters, digits, '_' or '-' (it becomes an MQTT client id and topic level)", r"[A-Za-z0-9_-]{1,64}"
)
_STATE_DIR = file_path("a folder for persistent state (the state store: sequence numbers, spool, checkpoint)")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole validated configuration. Build it with ``load_config``/``parse_config``."""

    WANTED: ClassVar[str] = "a mapping with at least device_id and source"

    device_id: str = required(_DEVICE_ID)
    site: str = leaf("default", text("a non-empty site name"))
    source: SourceConfig = registry_field(SOURCE_TYPES)
    models: ModelsConfig = section(ModelsConfig)
    runtime: RuntimeConfig = section(RuntimeConfig)
    detector: DetectorConfig = section(DetectorConfig)
    attributes: AttributesConfig = section(AttributesConfig)
    tracking: TrackingConfig = section(TrackingConfig)
    aggregation: AggregationConfig = section(AggregationConfig)
    sink: SinkConfig = registry_field(SINK_TYPES, default_type="jsonl")
    state_dir: Path = derived(_STATE_DIR, lambda ctx: _default_state_dir())
    log_level: str = leaf("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"))

    @classmethod
    def derive_context(cls, raw: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
        """The device id, read before the pass: the MQTT topic prefix defaults to ``edge/<device_id>/``."""
        return {"device_id": probe(_DEVICE_ID, raw, "device_id", base_dir) or "<device_id>"}


def parse_config(mapping: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate an already-loaded mapping (relative paths stay relative to the working directory)."""
    return parse_typed(mapping, Config, source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one YAML config file; raises ``ConfigError`` listing every problem."""
    return load_typed(path, Config)
