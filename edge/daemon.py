"""``edge run``: frames -> faces -> visitors -> privacy-safe windows -> sink.

One thread captures (newest frame only); this loop detects, tracks, asks for
attributes only for a track's few best observations, aggregates into
wall-clock windows and hands finished windows to the sink. Every window gets
its sequence number from the durable ``SeqStore`` before it is published, so
numbers never repeat across restarts. SIGTERM/SIGINT close the open window
early (``partial: true``) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np

from edge import __version__, sd_notify
from edge.aggregator import AggregationConfig as WindowConfig
from edge.aggregator import Aggregator
from edge.analyzer import Analyzer, AnalyzerConfig
from edge.attributes import AttributeSwitches
from edge.config import Config
from edge.feeds import LiveFeed, open_feed
from edge.sink_factory import build_sink
from edge.sinks import Sink, pi_health
from edge.spool import SeqStore, Spool
from edge.tracker import Tracker, TrackerConfig, TrackerUpdate

log = logging.getLogger(__name__)


def analyzer_config(config: Config) -> AnalyzerConfig:
    a = config.attributes
    return AnalyzerConfig(
        model_dir=config.models.dir, variant=config.models.variant, detector_input=config.models.detector_input,
        score_threshold=config.detector.score_threshold, min_face_px=config.detector.min_face_px,
        attributes=AttributeSwitches(age=a.age, gender=a.gender, expression=a.expression, ethnicity=a.ethnicity),
        backend=config.runtime.backend, threads=config.runtime.threads,
    )


def tracker_config(config: Config) -> TrackerConfig:
    t = config.tracking
    return TrackerConfig(iou_threshold=t.iou_threshold, max_missed_s=t.max_missed_s, min_visitor_s=t.min_visitor_s,
                         min_hits=t.min_hits, best_observations=t.best_observations)


def window_config(config: Config) -> WindowConfig:
    g = config.aggregation
    return WindowConfig(window_s=g.window_s, min_cell=g.min_cell, age_brackets=tuple(g.age_brackets),
                        ethnicity=config.attributes.ethnicity)


@dataclass
class Stats:
    """Running figures for the health topic (no per-person data)."""

    started: float
    frames: int = 0
    detect_ms: float = 0.0
    attributes_ms: float = 0.0
    windows: int = 0

    def observe(self, detect_ms: float, attributes_ms: float) -> None:
        self.frames += 1
        a = 0.1  # exponential moving averages: recent behaviour, constant memory
        self.detect_ms = detect_ms if self.frames == 1 else (1 - a) * self.detect_ms + a * detect_ms
        self.attributes_ms = attributes_ms if self.frames == 1 else (1 - a) * self.attributes_ms + a * attributes_ms


class Daemon:
    """The processing loop; construct, then ``run()`` until ``stop`` is set or the file ends."""

    def __init__(self, config: Config, stop: threading.Event, sink: Sink | None = None) -> None:
        self.config = config
        self.stop = stop
        Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        self.analyzer = Analyzer(analyzer_config(config))
        self.tracker = Tracker(tracker_config(config))
        self.seq = SeqStore(Path(config.state_dir) / "seq.sqlite3")
        self.aggregator = Aggregator(window_config(config), config.device_id, config.site, self.seq.peek())
        self.spool: Spool | None = None
        if sink is None:
            sink, self.spool = build_sink(config)
        self.sink = sink
        self.stats = Stats(started=time.monotonic())

    # -- windows

    def _emit(self, windows: list[dict]) -> None:
        for window in windows:
            seq = self.seq.next()  # durable before anyone sees the window
            if seq != window["seq"]:
                raise RuntimeError(f"window sequence out of step: store gave {seq}, window has {window['seq']}")
            self.sink.publish_window(window)
            self.stats.windows += 1
            log.info("window %s %s..%s: %s visitors%s", window["seq"], window["window"]["start"],
                     window["window"]["end"], window["visitors"], " (partial)" if window["window"]["partial"] else "")

    # -- per frame

    def _process(self, pixels: np.ndarray, monotonic: float, wall: float) -> TrackerUpdate:
        t0 = time.perf_counter()
        detections = self.analyzer.detect(pixels)
        t1 = time.perf_counter()
        update = self.tracker.update(detections, monotonic)
        if update.needs_attributes:
            requests = list(update.needs_attributes)
            estimates = self.analyzer.attributes.estimate(pixels, [r.detection for r in requests])
            for request, attributes in zip(requests, estimates):
                self.tracker.add_attributes(request.track_key, attributes)
        t2 = time.perf_counter()
        self.stats.observe((t1 - t0) * 1000, (t2 - t1) * 1000)
        self.aggregator.observe(update, wall)
        return update

    def _health(self, feed_fps: float, dropped: int) -> dict:
        fields = {"fps": round(feed_fps, 2), "processed_frames": self.stats.frames,
                  "detector_ms": round(self.stats.detect_ms, 2), "attributes_ms": round(self.stats.attributes_ms, 2),
                  "dropped_frames": dropped, "uptime_s": round(time.monotonic() - self.stats.started, 1),
                  "windows": self.stats.windows, "version": __version__}
        fields.update(pi_health(None))  # CPU temperature and throttling on a Pi, None elsewhere
        return fields

    def run(self) -> int:
        """Process frames until stopped or the file ends; always closes the last window."""
        config = self.config
        sink_interval = getattr(config.sink, "health_interval_s", 30.0)
        watchdog_s = sd_notify.watchdog_interval()
        feed = open_feed(config.source, self.stop, config.aggregation.window_s)
        last_wall = time.time()
        frame = None
        try:
            # READY once the source delivers, or after 10 s without it (a camera unplugged at
            # boot): systemd should then supervise a running daemon that keeps retrying the
            # camera, not kill and restart it into its start limit.
            first = feed.get(timeout=10.0)
            if first is None and not feed.ended():
                sd_notify.ready(f"waiting for the {config.source.type} source (retrying)")
                log.warning("ready: models loaded; no frames from the %s source yet, still retrying",
                            config.source.type)
                while first is None and not self.stop.is_set() and not feed.ended():
                    sd_notify.watchdog()
                    last_wall = time.time()
                    self._emit(self.aggregator.tick(last_wall))
                    first = feed.get(timeout=1.0)
            if first is not None:
                sd_notify.ready(f"processing {config.source.type} source")
                log.info("ready: models loaded, %s source open", config.source.type)
            next_health = time.monotonic()
            frame = first
            while not self.stop.is_set():
                if frame is not None:
                    self._process(frame.pixels, frame.monotonic, frame.wall)
                    last_wall = frame.wall
                elif feed.ended():
                    log.info("source ended")
                    break
                else:
                    last_wall = max(last_wall, time.time())
                self._emit(self.aggregator.tick(last_wall))
                if watchdog_s is not None:
                    sd_notify.watchdog()
                now = time.monotonic()
                if now >= next_health:
                    self.sink.publish_health(self._health(feed.fps(), feed.dropped))
                    next_health = now + sink_interval
                frame = feed.get(timeout=0.5)
        finally:
            sd_notify.stopping("closing the open window")
            if isinstance(feed, LiveFeed):
                last_wall = max(last_wall, time.time())
            try:
                ended = self.tracker.flush(time.monotonic() if frame is None else frame.monotonic)
                self.aggregator.observe(ended, last_wall)
                self._emit(self.aggregator.tick(last_wall))
                self._emit([self.aggregator.close(last_wall)])
            finally:
                feed.close()
                self.sink.close()
                self.seq.close()
        return 0


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; the loop then closes the open window and returns."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: closing the open window", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
