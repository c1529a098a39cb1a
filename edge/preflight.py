"""Would this config start? The side-effect-free checks behind ``edge check``.

Validation (``edge.config``) proves the file is well formed; it cannot know that
the video file is missing, that picamera2 is not installed or that the CA file is
garbage -- things ``edge run`` trips over in its first second. This module looks
at them without starting anything: files are read, the broker gets one TCP
connect and close (no MQTT session), cameras and streams are never opened.

Levels: what would certainly stop ``edge run`` is an ``error``. What may be
transient (DNS, a broker or camera host that is down, which ``edge run``
survives by retrying) is a ``warning``, and so is a permission problem, because
``edge check`` may run as another user than the service.

Each source and sink plugin carries its own check (``check`` in its module, see
``edge.plugins``); this module runs the configured ones and the checks of the
models, which belong to no plugin. Shared probes are in ``edge.checks``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from edge.checks import DEFAULT_TIMEOUT_S, Finding, Options
from edge.models import Manifest, ModelError
from edge.settings import Config
from edge.sinks import SINK_PLUGINS
from edge.sources import SOURCE_PLUGINS, is_live

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT_S", "Finding", "preflight", "refuses_start"]


def preflight(config: Config, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Finding, ...]:
    """Everything that would stop (error) or may trouble (warning) ``edge run`` with ``config``."""
    options = Options(timeout_s=timeout_s)
    findings: list[Finding] = []
    findings.extend(SOURCE_PLUGINS[config.source.type].check(config.source, "source", options))
    findings.extend(SINK_PLUGINS[config.sink.type].check(config.sink, "sink", options))
    findings.extend(_models(config))
    for finding in findings:
        log.debug("preflight %s: %s", finding.level, finding)
    return tuple(findings)


def refuses_start(config: Config, finding: Finding) -> bool:
    """Whether ``edge run`` must not start with ``finding``: any error (a missing or damaged video
    file, a model that does not match, a sink file it cannot write, bad TLS files) except one about
    a camera or stream the daemon waits for (it reopens them with backoff: a USB camera enumerates
    late, a network camera reboots, a Pi camera cable is reseated)."""
    if finding.level != "error":
        return False
    return not (is_live(config.source) and finding.key.split(".", 1)[0] == "source")


def _models(config: Config) -> Iterator[Finding]:
    """Every model file this config loads is present and matches the manifest (a read, no load)."""
    models, switches = config.models, config.attributes
    keys = ["detector" if models.detector_input == 512 else f"detector_{models.detector_input}"]
    keys += ["age_gender"] if switches.age or switches.gender else []
    keys += ["expression"] if switches.expression else []
    keys += ["ethnicity"] if switches.ethnicity else []
    try:
        manifest = Manifest(models.dir)
        # The face mesh: head pose needs it; the face check and turning faces upright use it where
        # the set lists it (older sets do not).
        keys += ["face_mesh"] if config.attention.enabled or "face_mesh" in manifest.models else []
        keys += ["person"] if config.people.enabled else []  # counting people needs the person detector
        for model_key in keys:
            manifest.info(model_key, models.variant)
        manifest.anchors(keys[0])  # the detector's box priors are checked against the manifest too
    except ModelError as exc:
        yield Finding("error", "models.dir" if models.variant == "int8" else "models.variant", str(exc))
