"""The device's configuration: the root schema that assembles every section.

Sections are declared beside what they configure where that is one stage (a source or sink
plugin declares its own); the rest are here. ``load_config`` reads the YAML file once at
start-up; the result is passed to what needs it (no global config).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.aggregator import AggregationConfig
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config.build import load_typed, parse_typed
from edge.config.fields import (
    choice,
    derived,
    file_path,
    integer,
    leaf,
    optional,
    probe,
    registry_field,
    required,
    section,
    text,
)
from edge.detector import DetectorConfig
from edge.models import DEFAULT_DIR as DEFAULT_MODEL_DIR
from edge.people_config import PeopleConfig
from edge.privacy_config import PrivacyConfig, privacy_problems
from edge.sinks import SINK_TYPES, SinkConfig
from edge.sources import SOURCE_TYPES, SourceConfig
from edge.tracker import TrackingConfig

DEFAULT_STATE_DIR = Path("~/.local/state/edge")


@dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    """Which model files the daemon loads (the manifest in ``dir`` names and checks them)."""

    dir: Path = leaf(DEFAULT_MODEL_DIR, file_path("a folder holding the .tflite models"))
    variant: str = leaf("int8", choice("int8", "float"))
    detector_input: int = leaf(512, choice(512, 320))


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """The TFLite interpreter and its threads (``auto``: the first installed of LiteRT, tflite-runtime)."""

    backend: str = leaf("auto", choice("auto", "litert", "tflite_runtime", "tensorflow"))
    threads: int | None = leaf(None, optional(integer("a thread count from 1 to 256", lo=1, hi=256), "all cores"))


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
    attention: AttentionConfig = section(AttentionConfig)
    people: PeopleConfig = section(PeopleConfig)
    privacy: PrivacyConfig = section(PrivacyConfig)
    sink: SinkConfig = registry_field(SINK_TYPES, default_type="jsonl")
    state_dir: Path = derived(_STATE_DIR, lambda ctx: _default_state_dir())
    log_level: str = leaf("INFO", choice("DEBUG", "INFO", "WARNING", "ERROR"))

    @classmethod
    def derive_context(cls, raw: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
        """The device id, read before the pass: the MQTT topic prefix defaults to ``edge/<device_id>/``."""
        return {"device_id": probe(_DEVICE_ID, raw, "device_id", base_dir) or "<device_id>"}

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        """Checks across sections: the privacy modes' rules on ``attributes`` (``edge.privacy_config``)."""
        return privacy_problems(self.privacy, self.attributes)


def parse_config(mapping: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate an already-loaded mapping (relative paths stay relative to the working directory)."""
    return parse_typed(mapping, Config, source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one YAML config file; raises ``ConfigError`` listing every problem."""
    return load_typed(path, Config)
