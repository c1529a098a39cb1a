"""``edge run``: frames -> faces -> visitors -> privacy-safe windows -> sink.

One thread captures (newest frame only); this loop detects, tracks, asks for
attributes only for a track's few best observations, aggregates into
wall-clock windows and hands finished windows to the state store, which numbers
and spools each in one transaction (``edge.state_store``), and the sink delivers
them from there. SIGTERM/SIGINT close the open window early (``partial: true``)
and the process exits 0. When the state store cannot be written, windows go out
from memory and the daemon stops after delivering them, with 1, so the service
manager restarts it on storage that works (or in memory again, without stopping).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import __version__, sd_notify
from edge.aggregator import Aggregator, breakdown_cells
from edge.analyzer import Analyzer, AnalyzerConfig
from edge.clock import Clock, SystemClock
from edge.feeds import Feed, ReplayFeed, open_feed
from edge.people import WEAK_FACTOR, PeopleTracker
from edge.pipeline import FramePipeline
from edge.settings import Config
from edge.sinks import Sink, SinkContext, build_sink, pi_health
from edge.sources import SourceError
from edge.state_lock import StateLock
from edge.state_store import FILE_NAME, StateStore, StorageError
from edge.tracker import Tracker, TrackerUpdate
from edge.window import Window

log = logging.getLogger(__name__)


def analyzer_config(config: Config) -> AnalyzerConfig:
    a = config.attributes
    return AnalyzerConfig(
        model_dir=config.models.dir,
        variant=config.models.variant,
        detector_input=config.models.detector_input,
        # The detector reports weak boxes too; the tracker decides what they may do.
        score_threshold=min(config.detector.weak_threshold, config.detector.score_threshold),
        min_face_px=config.detector.min_face_px,
        tile_interval=config.detector.tile_interval,
        attributes=a,
        attribute_views=a.views,
        gender_gate=a.min_gender_score,
        align=True,  # a track's few best observations are described: the mesh run is cheap here
        pose=config.attention.enabled,  # every face's head pose, for attention time
        people=config.people.enabled,  # the person detector, for people counting
        person_threshold=WEAK_FACTOR * config.people.score_threshold,  # weak boxes continue person tracks
        backend=config.runtime.backend,
        threads=config.runtime.threads,
    )


@dataclass
class Stats:
    """Running figures for the health topic (no per-person data)."""

    started: float
    frames: int = 0
    detect_ms: float = 0.0
    pose_ms: float = 0.0
    person_ms: float = 0.0
    track_ms: float = 0.0
    attributes_ms: float = 0.0
    windows: int = 0

    def observe(
        self, detect_ms: float, pose_ms: float, track_ms: float, attributes_ms: float, person_ms: float = 0.0
    ) -> None:
        self.frames += 1
        a = 1.0 if self.frames == 1 else 0.1  # moving averages: recent behaviour, constant memory
        self.detect_ms += a * (detect_ms - self.detect_ms)
        self.pose_ms += a * (pose_ms - self.pose_ms)
        self.person_ms += a * (person_ms - self.person_ms)
        self.track_ms += a * (track_ms - self.track_ms)
        self.attributes_ms += a * (attributes_ms - self.attributes_ms)


# A wall clock that moves this much more or less than the monotonic clock between two frames was
# stepped (NTP on a board without a real-time clock), not drifting.
CLOCK_STEP_S = 5.0


def clock_step(last_wall: float, last_mono: float, wall: float, mono: float) -> float:
    """How far the wall clock jumped between two frames, beyond the time that passed (0: no step)."""
    step = (wall - last_wall) - (mono - last_mono)
    return step if abs(step) > CLOCK_STEP_S else 0.0


# Unsent windows kept by a sink without a spool setting of its own (the jsonl sink): a week of
# minute windows.
DEFAULT_MAX_WINDOWS = 10080
# After storage failed, how long the daemon waits for the sink to deliver what it holds before it
# exits for a restart.
DELIVER_BEFORE_EXIT_S = 30.0


class Daemon:
    """The processing loop; construct, then ``run()`` until ``stop`` is set or the file ends."""

    def __init__(
        self,
        config: Config,
        stop: threading.Event,
        sink: Callable[[StateStore], Sink] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``sink``: builds the sink that delivers from the state store's spool (the configured
        one when None)."""
        self.config = config
        self.stop = stop
        self.clock: Clock = clock or SystemClock()
        try:
            Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"state directory {config.state_dir} cannot be created: {exc.strerror or exc}") from exc
        # First, so a second daemon on the same state directory stops before it touches anything.
        self.lock = StateLock(Path(config.state_dir))
        self.lock.acquire()
        try:
            spool = getattr(config.sink, "spool", None)
            self.store = StateStore(
                Path(config.state_dir) / FILE_NAME, spool.max_windows if spool is not None else DEFAULT_MAX_WINDOWS
            )
        except BaseException:
            self.lock.release()
            raise
        try:
            self.analyzer = Analyzer(analyzer_config(config))
            self.tracker = Tracker(config.tracking, config.detector, config.attributes, config.attention)
            people = PeopleTracker(config.people) if config.people.enabled else None
            self.pipeline = FramePipeline(self.analyzer, self.tracker, people)
            self.aggregator = Aggregator(
                config.aggregation, config.attributes, config.attention, config.device_id, config.site, config.people
            )
            if sink is None:
                context = SinkContext(
                    config.device_id,
                    __version__,
                    window_s=config.aggregation.window_s,
                    cells=breakdown_cells(config.aggregation, config.attributes),
                    attention=config.attention.enabled,
                    people=config.people.enabled,
                    line=config.people.enabled and config.people.line is not None,
                    zones=config.people.zone_names if config.people.enabled else (),
                )
                self.sink = build_sink(config.sink, context, self.store)
            else:
                self.sink = sink(self.store)
        except BaseException:
            self.store.close()
            self.lock.release()
            raise
        self.stats = Stats(started=self.clock.monotonic())
        # Storage that fails at start leaves nothing a restart would fix: such a daemon keeps going
        # in memory. One that fails while running stops after delivery, to be restarted.
        self._failed_at_start = self.store.failure is not None

    # -- windows

    def _emit(self, windows: list[Window]) -> None:
        """Number and spool finished windows, oldest first (one transaction each), and let the sink
        deliver them. A store that cannot write keeps them in memory (``StateStore.failure``)."""
        store = self.store
        for window in windows:
            numbered = store.finish(window)
            self.sink.publish_window(numbered)
            self.stats.windows += 1
            visitors = numbered.visitors
            log.info(
                "window %s %s..%s: %s%s%s",
                numbered.seq,
                numbered.span.start,
                numbered.span.end,
                f"{visitors} visitors" if visitors is not None else "visitors withheld (1 to min_cell - 1)",
                " (partial)" if numbered.span.partial else "",
                " (in memory only)" if store.failure is not None else "",
            )

    def _recover(self) -> None:
        """Publish the open window an unclean stop (SIGKILL, power loss) left as a checkpoint."""
        saved = self.store.checkpoint()
        if saved is None:
            return
        log.warning(
            "the previous run stopped without closing window %s..%s: publishing it as partial from its "
            "last checkpoint (%s s observed; anything counted after the checkpoint is lost)",
            saved.span.start,
            saved.span.end,
            saved.observed_s,
        )
        self._emit([saved.as_partial()])

    def _checkpoint(self) -> None:
        snapshot = self.aggregator.snapshot()
        if snapshot is None:
            return
        self.store.save_checkpoint(snapshot)
        log.debug(
            "checkpoint of window %s: %s visitors so far, %s s observed",
            snapshot.span.start,
            snapshot.visitors,
            snapshot.observed_s,
        )

    def _deliver_from_memory(self) -> None:
        """Before the process ends with its windows in memory only: give the sink time to deliver."""
        wait = getattr(self.sink, "wait_idle", None)
        if self.store.depth() and wait is not None:
            log.warning(
                "waiting up to %.0f s for %d window(s) in memory to be delivered",
                DELIVER_BEFORE_EXIT_S,
                self.store.depth(),
            )
            wait(DELIVER_BEFORE_EXIT_S)
        if self.store.depth():
            log.error(
                "%d window(s) kept in memory only could not be delivered and end with this process", self.store.depth()
            )

    # -- per frame

    def _process(self, pixels: np.ndarray, monotonic: float, wall: float) -> TrackerUpdate:
        result = self.pipeline.process(pixels, monotonic)
        self.stats.observe(result.detect_ms, result.pose_ms, result.track_ms, result.attributes_ms, result.person_ms)
        self.aggregator.observe(result.update, wall, result.people)
        return result.update

    def _health(self, feed_fps: float, dropped: int) -> dict:
        fields = {
            "fps": round(feed_fps, 2),
            "processed_frames": self.stats.frames,
            "detector_ms": round(self.stats.detect_ms, 2),
            "pose_ms": round(self.stats.pose_ms, 2),
            "person_ms": round(self.stats.person_ms, 2),
            "tracker_ms": round(self.stats.track_ms, 3),
            "attributes_ms": round(self.stats.attributes_ms, 2),
            "dropped_frames": dropped,
            "uptime_s": round(self.clock.monotonic() - self.stats.started, 1),
            "windows": self.stats.windows,
            # Windows kept in memory only, because the state store cannot be written.
            "held_windows": self.store.depth() if self.store.failure is not None else 0,
            "storage": "ok" if self.store.failure is None else "failed",
            "version": __version__,
        }
        fields.update(pi_health(None))  # CPU temperature and throttling on a Pi, None elsewhere
        return fields

    def run(self) -> int:
        """Process frames until stopped or the source ends; always closes the last window.

        Returns 0 on a clean stop or the end of a file, 1 when the source gave up or the sink
        failed (so ``Restart=on-failure`` brings the service back).
        """
        config = self.config
        health_every = getattr(config.sink, "health_interval_s", 30.0)
        watchdog_s = sd_notify.watchdog_interval()
        # Ping the watchdog only while the source shows signs of life (a frame or a reopen
        # attempt); a capture stuck inside a driver then gets the service restarted.
        stall_s = 2 * config.source.reopen_backoff_s.max + 10.0
        feed: Feed | None = None  # for the finally clause: open_feed itself may fail
        last_wall = self.clock.wall()
        last_mono = self.clock.monotonic()
        timed = False  # the first frame sets the clocks' baseline (a replay starts on a window boundary)
        ready = False
        sink_failure: str | None = None
        storage_failure: str | None = None
        try:
            self._recover()
            try:
                feed = live = open_feed(config.source, self.stop, config.aggregation.window_s, self.clock)
            except SourceError as exc:  # a replayed file that cannot be read: nothing was counted
                log.error("the %s source cannot be read: %s", config.source.type, exc)
                return 1
            started = last_progress_at = next_health = next_checkpoint = self.clock.monotonic()
            last_progress = -1
            while not self.stop.is_set():
                if (sink_failure := self.sink.failure) is not None:
                    # Spooling on unseen would look healthy and publish nothing: stop, and let the
                    # service manager restart a daemon that delivers the spooled windows.
                    log.critical("%s; stopping (finished windows stay in the spool for the next start)", sink_failure)
                    break
                frame = live.get(timeout=0.5)
                now = self.clock.monotonic()
                if frame is not None:
                    wall, mono = frame.wall, frame.monotonic
                elif live.ended():
                    break
                else:  # a live source without frames: time still passes, tracks still expire
                    wall, mono = self.clock.wall(), now
                if timed:
                    if step := clock_step(last_wall, last_mono, wall, mono):
                        log.warning(
                            "the wall clock stepped %+.0f s (NTP?): the open window is closed as partial and "
                            "counting resumes on the new clock",
                            step,
                        )
                        self.aggregator.step_clock()
                    else:
                        wall = max(wall, last_wall)  # a small slew back never reopens an older window
                if frame is not None:
                    self._process(frame.pixels, mono, wall)
                else:
                    expired = self.pipeline.expire(mono)
                    self.aggregator.observe(expired.update, wall, expired.people)
                last_wall, last_mono, timed = wall, mono, True
                if not ready and (frame is not None or now - started >= 10.0):
                    # READY once the source delivers, or after 10 s without it (a camera
                    # unplugged at boot): systemd then supervises a daemon that keeps retrying
                    # the camera instead of restarting it into its start limit.
                    ready = True
                    sd_notify.ready(
                        f"processing the {config.source.type} source"
                        if frame is not None
                        else f"waiting for the {config.source.type} source (retrying)"
                    )
                    if frame is not None:
                        log.info("ready: models loaded, %s source open", config.source.type)
                    else:
                        log.warning(
                            "ready: models loaded; no frames from the %s source yet, still retrying", config.source.type
                        )
                self._emit(self.aggregator.tick(last_wall))
                if self.store.failure is not None and not self._failed_at_start:
                    storage_failure = self.store.failure
                    self.sink.publish_health(self._health(live.fps(), live.dropped))  # retained: says why
                    log.critical(
                        "%s; closing the open window, delivering what is held, then stopping so the service "
                        "restarts on storage that works",
                        storage_failure,
                    )
                    break
                if live.progress != last_progress:
                    last_progress, last_progress_at = live.progress, now
                if watchdog_s is not None and now - last_progress_at < stall_s:
                    sd_notify.watchdog()
                if now >= next_health:
                    self.sink.publish_health(self._health(live.fps(), live.dropped))
                    next_health = now + health_every
                if now >= next_checkpoint:
                    self._checkpoint()
                    # One small SQLite transaction per save: cheap even for an SD card.
                    next_checkpoint = now + config.aggregation.checkpoint_s
        finally:
            sd_notify.stopping("closing the open window")
            if not isinstance(feed, ReplayFeed):
                wall, mono = self.clock.wall(), self.clock.monotonic()
                if not clock_step(last_wall, last_mono, wall, mono):
                    last_wall, last_mono = max(last_wall, wall), mono
            try:
                if feed is not None:  # else nothing was observed: no window to close
                    flushed = self.pipeline.flush(last_mono)
                    self.aggregator.observe(flushed.update, last_wall, flushed.people)
                    self._emit(self.aggregator.tick(last_wall))
                    self._emit([self.aggregator.close(last_wall)])
                if self.store.failure is not None:
                    self._deliver_from_memory()
            finally:
                if feed is not None:
                    feed.close()
                self.sink.close()
                self.store.close()
                self.lock.release()
        if sink_failure is not None or storage_failure is not None:
            return 1
        if feed is not None and feed.error is not None:
            log.error("the %s source gave up: %s", config.source.type, feed.error)
            return 1
        log.info("source ended" if not self.stop.is_set() else "stopped")
        return 0
