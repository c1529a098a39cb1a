"""Frame sources: cameras, streams and files, one plugin module each, and the capture thread.

Plugins (``edge.plugins``): ``picamera2``, ``v4l2``, ``rtsp``, ``file``; each module holds its
config section, its ``FrameSource`` and its ``edge check`` probe. ``base`` is what they share
(``opencv`` for the OpenCV-backed ones); ``capture`` runs a source on its own thread. A new
source is one new module here.
"""

from __future__ import annotations

import sys
from typing import Any

from edge.plugins import Plugin, config_types, discover
from edge.sources.base import FrameSource, SourceConfig, SourceError, SourceUnavailable, redact_url
from edge.sources.capture import Capture

SOURCE_PLUGINS: dict[str, Plugin[FrameSource]] = dict(discover(sys.modules[__name__]))
SOURCE_TYPES: dict[str, type[Any]] = config_types(SOURCE_PLUGINS)


def make_source(config: SourceConfig) -> FrameSource:
    """The (unopened) source for a validated ``config.source``."""
    plugin = SOURCE_PLUGINS.get(config.type)
    if plugin is None:
        raise ValueError(f"no frame source for type {config.type!r}; known: {', '.join(SOURCE_PLUGINS)}")
    return plugin.build(config)


def is_live(config: SourceConfig) -> bool:
    """Whether the source is a camera or stream the daemon waits for (reopened with backoff)."""
    return bool(getattr(SOURCE_PLUGINS[config.type].build, "live", True))


__all__ = [
    "SOURCE_PLUGINS",
    "SOURCE_TYPES",
    "Capture",
    "FrameSource",
    "SourceConfig",
    "SourceError",
    "SourceUnavailable",
    "is_live",
    "make_source",
    "redact_url",
]
