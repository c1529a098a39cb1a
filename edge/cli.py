"""The ``edge`` command line."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge import __version__
from edge.analyzer import Analyzer, AnalyzerConfig
from edge.attributes import DESCRIBE_MIN_FACE_PX, ETHNICITY_WARNING, MIN_GENDER_SCORE, AttributeSwitches
from edge.interpreter import BackendUnavailable
from edge.models import DEFAULT_DIR, MISSING_HINT, Manifest, ModelError
from edge.preprocess import DEFAULT_VIEWS, VIEW_COUNTS

if TYPE_CHECKING:  # the fleet side needs psycopg, which a device does not install
    from edge.fleet.config import FleetConfig


def _models(args: argparse.Namespace) -> int:
    """Verify every model against the manifest, load it, and print what it is.

    An installed package carries only the int8 models: a float32 file that is absent is listed as
    such (with where to get it), a file that is present but corrupt still fails.
    """
    manifest = Manifest(args.model_dir)
    rows = []
    missing = []
    for key, entry in manifest.models.items():
        for variant in ("int8", "float"):
            name = key + (" (opt-in)" if entry.get("opt_in") else "")
            if variant == "float" and not manifest.has(key, variant):
                missing.append(key)
                rows.append((name, variant, manifest.file_name(key, variant), "-", "-", "-", "not installed"))
                continue
            info, model = manifest.load(key, variant, backend=args.backend, threads=1)
            shape = "x".join(str(d) for d in model.input.shape)
            rows.append((name, variant, info.path.name, shape, str(model.input.dtype), model.backend.name, "sha256 ok"))
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    if missing:
        sys.stdout.write(f"float32 models not installed ({', '.join(missing)}): {MISSING_HINT}\n")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Validate the file, then look (without side effects) for what would stop ``edge run``."""
    from edge.preflight import preflight
    from edge.settings import load_config

    config = load_config(args.config)
    findings = preflight(config)
    for finding in findings:
        sys.stderr.write(f"{finding.level}: {finding}\n")
    if any(f.level == "error" for f in findings):
        return 2
    sys.stdout.write(
        f"{args.config}: ok (device {config.device_id}, site {config.site}, "
        f"source {type(config.source).type}, sink {type(config.sink).type}, "
        f"windows of {config.aggregation.window_s} s, min cell {config.aggregation.min_cell}"
        f"{', ETHNICITY ON' if config.attributes.ethnicity else ''})\n"
    )
    return 0


def _forget(args: argparse.Namespace) -> int:
    """Clear the device's retained discovery configs, status and health from its broker."""
    from edge import __version__
    from edge.settings import load_config
    from edge.sinks.base import SinkContext
    from edge.sinks.forget import forget_device
    from edge.sinks.mqtt import MqttSinkConfig, mqtt_settings
    from edge.state_lock import StateDirBusy, StateLock

    config = load_config(args.config)
    if not isinstance(config.sink, MqttSinkConfig):
        raise ValueError(f"{args.config}: sink.type is {type(config.sink).type!r}; forget needs an mqtt sink")
    # A running daemon would announce the device again at its next reconnect: stop it first.
    lock = StateLock(config.state_dir)
    if config.state_dir.is_dir():  # no state directory: no daemon ever ran with this config here
        try:
            lock.acquire()
        except StateDirBusy as exc:
            if lock.holder is None:
                raise
            raise StateDirBusy(
                f"the edge daemon (pid {lock.holder}) is running with state directory {config.state_dir}: it would "
                "announce the device again; stop it first (e.g. systemctl stop edge), then forget the device"
            ) from exc
    try:
        cleared = forget_device(
            mqtt_settings(config.sink, SinkContext(config.device_id, __version__)), config.device_id
        )
    finally:
        lock.release()
    sys.stdout.write(
        f"{config.device_id}: cleared {len(cleared)} retained message(s) on {config.sink.host}:{config.sink.port}"
        + "".join(f"\n  {topic}" for topic in cleared)
        + "\n"
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    from edge.commands import init

    doc = init.build(
        args.source,
        args.sink,
        device_id=args.device_id,
        site=args.site,
        path=None if args.path is None else args.path.resolve(),  # the config may be written elsewhere
        url=args.url,
        device=args.device,
        host=args.host,
        port=args.port,
    )
    return init.run(doc, args.output)


def _run(args: argparse.Namespace) -> int:
    from edge.daemon import Daemon
    from edge.preflight import preflight, refuses_start
    from edge.settings import load_config
    from edge.signals import install_signal_handlers

    config = load_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level)
    # edge check's checks, before anything is opened or published: what would stop the run stops it
    # here, with the same words; a missing camera or stream is waited for (the daemon retries it).
    findings = preflight(config)
    blocking = [f for f in findings if refuses_start(config, f)]
    for finding in findings:
        if finding in blocking:
            sys.stderr.write(f"error: {finding}\n")
        else:
            logging.getLogger("edge.preflight").warning("pre-start check: %s: %s", finding.level, finding)
    if blocking:
        return 2
    stop = threading.Event()
    install_signal_handlers(stop, "closing the open window", logging.getLogger("edge.daemon"))
    return Daemon(config, stop).run()


def _fleet_start(args: argparse.Namespace, action: str, component: str) -> tuple[FleetConfig, threading.Event]:
    """The fleet config and a stop event that SIGTERM/SIGINT/SIGHUP set (``action`` is logged under
    the ``component``'s logger)."""
    from edge.fleet.config import load_fleet_config
    from edge.signals import install_signal_handlers

    config = load_fleet_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level)
    stop = threading.Event()
    install_signal_handlers(stop, action, logging.getLogger(component))
    return config, stop


def _collect(args: argparse.Namespace) -> int:
    """The fleet collector: windows from the broker into PostgreSQL until SIGTERM/SIGINT."""
    import psycopg

    from edge.fleet.collector import Collector

    config, stop = _fleet_start(
        args, "committing and acknowledging what has arrived, then stopping", "edge.fleet.collector"
    )
    try:
        Collector(config, stop).run()
    except psycopg.Error as exc:  # e.g. the role may not create tables: retrying will not help
        sys.stderr.write(f"edge collect: database {config.database.dbname}: {str(exc).strip()}\n")
        return 1
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """The read-only fleet dashboard over the collector's database."""
    from edge.fleet.dashboard import serve

    config, stop = _fleet_start(args, "stopping the dashboard", "edge.fleet.dashboard")
    try:
        serve(config, stop)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        d = config.dashboard
        sys.stderr.write(f"edge dashboard: cannot listen on {d.bind}:{d.port}: {exc.strerror or exc}\n")
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from edge.commands import demo

    return demo.run(args.duration, args.window, args.workdir, broker_at=args.broker)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (argparse adds the option's name to the refusal)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as broker.local:1883, got {text!r}")
    return host, int(port)


def _non_negative_float(text: str) -> float:
    """An option's number, 0 or more (argparse adds the option's name to the refusal)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _resolutions(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) < 32 for s in sizes):
        raise ValueError(f"--resolution: expected sizes like 640x480,1280x720, got {text!r}")
    return [(s[0], s[1]) for s in sizes]


def _analyzer_config(args: argparse.Namespace, variant: str | None = None, size: int | None = None) -> AnalyzerConfig:
    return AnalyzerConfig(
        model_dir=args.model_dir,
        variant=variant or args.variant,
        detector_input=size or args.detector_input,
        score_threshold=0.5 if args.threshold is None else args.threshold,
        min_face_px=0 if args.min_face is None else args.min_face,
        tile_interval=getattr(args, "tile_interval", None) or 1,
        attributes=AttributeSwitches(
            age=not args.no_age, gender=not args.no_gender, expression=not args.no_expression, ethnicity=args.ethnicity
        ),
        attribute_views=args.views,
        align=args.align,
        backend=args.backend,
        threads=args.threads,
    )


def _analyze(args: argparse.Namespace) -> int:
    from edge.commands import analyze

    naming = analyze.Naming(args.describe_min_face, args.min_gender_score)
    analyzer = Analyzer(_analyzer_config(args))
    return analyze.run(analyzer, args.paths, args.json, args.annotate, args.every, naming=naming)


def _eval(args: argparse.Namespace) -> int:
    if args.face_px is not None and args.clips is not None:
        raise ValueError("--face-px goes with --utkface, not --clips")
    if args.with_float and args.int8_only:
        raise ValueError("--with-float and --int8-only contradict each other")
    if args.clips is not None:
        return _eval_clips(args)
    from edge.commands import evaluate

    sizes = evaluate.parse_face_px(args.face_px) if args.face_px is not None else []
    variants = [args.variant]
    # The face-size sweep is int8 only unless --with-float: it is ten runs of the set already.
    if args.variant == "int8" and not args.int8_only and (args.face_px is None or args.with_float):
        manifest = Manifest(args.model_dir)
        if all(manifest.has(key, "float") for key in manifest.models):
            variants.append("float")
        else:
            logging.getLogger("edge.eval").warning("float32 models not installed: int8 only. %s", MISSING_HINT)
    if args.face_px is not None:
        return evaluate.run_face_px(
            lambda v: Analyzer(_analyzer_config(args, variant=v)),
            variants,
            args.utkface,
            sizes,
            args.json,
            args.limit,
            frame=evaluate.parse_frame(args.frame),
        )
    return evaluate.run(
        lambda v: Analyzer(_analyzer_config(args, variant=v)),
        variants,
        args.utkface,
        args.canvas,
        args.json,
        args.ethnicity,
        args.limit,
    )


def _eval_clips(args: argparse.Namespace) -> int:
    """Score the daemon's counting (its defaults, or --config's settings) on labelled clips."""
    from dataclasses import replace

    from edge.commands import clips
    from edge.daemon import analyzer_config, tracker_config
    from edge.settings import load_config, parse_config

    if args.config is not None:
        config = load_config(args.config)
    else:
        config = parse_config(
            {"device_id": "eval", "source": {"type": "file", "path": "-"}, "sink": {"type": "jsonl", "path": "-"}},
            "edge eval defaults",
        )
    base = analyzer_config(config)
    chosen = replace(base, model_dir=args.model_dir, variant=args.variant, backend=args.backend, threads=args.threads)
    return clips.run(lambda: Analyzer(chosen), tracker_config(config), args.clips, args.json)


def _bench(args: argparse.Namespace) -> int:
    from edge.commands import bench

    # One way to choose what runs: --variant and --detector-input, each repeatable. Photos compare
    # every combination by default; the pipeline measures what the daemon runs by default.
    default_variants, default_sizes = (["int8"], [512]) if args.pipeline else (["int8", "float"], [512, 320])
    if not args.variant and "float" in default_variants:
        # A wheel carries the int8 models only: by default, measure what is installed and say so.
        manifest = Manifest(args.model_dir)
        if not all(manifest.has(key, "float") for key in manifest.models):
            default_variants = ["int8"]
            logging.getLogger("edge.bench").warning("float32 models not installed: int8 only. %s", MISSING_HINT)
    configs = [(v, s) for v in args.variant or default_variants for s in args.detector_input or default_sizes]
    if args.pipeline:
        from edge.daemon import tracker_settings
        from edge.settings import AttributesConfig, DetectorConfig, TrackingConfig

        # The daemon's defaults: weak detections reach the tracker, the detection plan covers
        # faces down to detector.min_face_px; --threshold/--min-face override them.
        detector = DetectorConfig()
        if args.threshold is None:
            args.threshold = min(detector.weak_threshold, detector.score_threshold)
        if args.min_face is None:
            args.min_face = detector.min_face_px
        if args.tile_interval is None:
            args.tile_interval = detector.tile_interval
        attributes = AttributesConfig()
        return bench.run_pipeline(
            lambda v, s: Analyzer(
                replace(_analyzer_config(args, variant=v, size=s), gender_gate=attributes.min_gender_score, align=True)
            ),
            tracker_settings(TrackingConfig(), detector, attributes),
            configs,
            _resolutions(args.resolution),
            [int(n) for n in args.faces.split(",")],
            args.duration,
            args.fps,
            args.json,
        )
    if not args.json:
        sys.stdout.write(bench.header())
    return bench.run(
        lambda v, s: Analyzer(_analyzer_config(args, variant=v, size=s)),
        configs,
        args.paths,
        args.repeats,
        args.max_frames,
        args.json,
    )


def _add_analyzer_options(p: argparse.ArgumentParser, repeatable: bool = False) -> None:
    """Model and detector options; with ``repeatable`` (bench) --variant/--detector-input may repeat."""
    p.add_argument("--model-dir", type=Path, default=DEFAULT_DIR, help="models folder (default: %(default)s)")
    if repeatable:
        p.add_argument(
            "--variant",
            choices=["int8", "float"],
            action="append",
            help="model variant; repeat to compare (default: int8 and float; int8 with --pipeline)",
        )
        p.add_argument(
            "--detector-input",
            type=int,
            choices=[512, 320],
            action="append",
            help="detector input size; repeat to compare (default: 512 and 320; 512 with --pipeline)",
        )
    else:
        p.add_argument("--variant", choices=["int8", "float"], default="int8", help="model variant (default: int8)")
        p.add_argument(
            "--detector-input",
            type=int,
            choices=[512, 320],
            default=512,
            help="detector input size; 320 is faster and misses more small faces (default: 512)",
        )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detector score threshold (default: 0.5; bench --pipeline: the daemon's weak_threshold)",
    )
    p.add_argument(
        "--min-face",
        type=int,
        default=None,
        help="smallest face in pixels; above 0, enlarged tiles find faces down to it "
        "(default: 0, one full-frame pass; bench --pipeline: the daemon's detector.min_face_px)",
    )
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "litert", "tflite_runtime", "tensorflow"],
        help="TFLite interpreter (default: the first installed of LiteRT, tflite-runtime, TensorFlow)",
    )
    p.add_argument("--no-age", action="store_true", help="do not estimate age")
    p.add_argument("--no-gender", action="store_true", help="do not estimate gender")
    p.add_argument("--no-expression", action="store_true", help="do not estimate facial expression")
    p.add_argument(
        "--views",
        type=int,
        choices=VIEW_COUNTS,
        default=DEFAULT_VIEWS,
        help=f"crops averaged per attribute estimate (default: {DEFAULT_VIEWS}, as attributes.views; 1 is fastest)",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="turn tilted faces upright before the attribute models, as the daemon does "
        "(one face mesh run per face, about 4 ms a face on the demo photos)",
    )
    p.add_argument(
        "--ethnicity",
        action="store_true",
        help=f"also estimate ethnicity (off by default). RESTRICTED: {ETHNICITY_WARNING}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="Edge-device face analytics runtime")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # so `edge -v CMD` and `edge CMD -v` both work
        help="debug logging, including the interpreter's own start-up messages",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose._actions[0].help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        parents=[verbose], name="models", help="verify and load the shipped models (checksums against the manifest)"
    )
    p.add_argument("--model-dir", type=Path, default=DEFAULT_DIR, help="models folder (default: %(default)s)")
    p.add_argument("--backend", default="auto", help="auto, litert, tflite_runtime or tensorflow")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        parents=[verbose], name="init", help="write a minimal valid config for your camera and sink (stdout or -o)"
    )
    p.add_argument("--source", choices=("picamera2", "v4l2", "rtsp", "file"), required=True)
    p.add_argument("--sink", choices=("mqtt", "jsonl"), default="jsonl", help="default: jsonl (windows on stdout)")
    p.add_argument("--path", type=Path, help="--source file: the video")
    p.add_argument("--url", help="--source rtsp: the stream URL")
    p.add_argument("--device", help="--source v4l2: index or /dev path (default: 0)")
    p.add_argument("--host", default="localhost", help="--sink mqtt: the broker (default: localhost)")
    p.add_argument("--port", type=int, help="--sink mqtt: the broker's port (default: 1883, 8883 with TLS)")
    p.add_argument("--device-id", help="letters, digits, '_' or '-' (default: this machine's host name)")
    p.add_argument("--site", default="default", help="a label for where the device is")
    p.add_argument("-o", "--output", type=Path, help="write here (refuses to overwrite); default: stdout")
    p.set_defaults(func=_init)

    p = sub.add_parser(
        parents=[verbose], name="run", help="the daemon: camera frames to privacy-safe visitor counts per window"
    )
    p.add_argument("--config", type=Path, required=True, help="YAML config (see edge/config.example.yaml)")
    p.set_defaults(func=_run)

    p = sub.add_parser(
        parents=[verbose],
        name="demo",
        help="everything on this machine: sample video, local broker, daemon, live messages",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--window", type=int, default=10, help="window length in seconds (default: 10)")
    p.add_argument("--workdir", type=Path, default=None, help="where the video, broker config and state go")
    p.add_argument(
        "--broker",
        type=_host_port,
        metavar="HOST:PORT",
        help="publish to this broker (e.g. a fleet's, so `edge collect` stores the demo) instead of a private one",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        parents=[verbose], name="collect", help="fleet: store every device's windows from the broker in PostgreSQL"
    )
    p.add_argument("--config", type=Path, required=True, help="collector YAML (see edge/fleet/collector.example.yaml)")
    p.set_defaults(func=_collect)

    p = sub.add_parser(parents=[verbose], name="dashboard", help="fleet: a read-only web page of the collected windows")
    p.add_argument("--config", type=Path, required=True, help="the collector's YAML (its database and dashboard)")
    p.set_defaults(func=_dashboard)

    p = sub.add_parser(parents=[verbose], name="check", help="validate a config file without starting anything")
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=_check)

    p = sub.add_parser(
        parents=[verbose],
        name="forget",
        help="remove the device from Home Assistant and the broker (retained discovery, status, health); "
        "stop its daemon first",
    )
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(func=_forget)

    p = sub.add_parser(
        parents=[verbose], name="analyze", help="faces and attributes in images, folders and video files"
    )
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
        type=_non_negative_float,
        default=DESCRIBE_MIN_FACE_PX,
        metavar="PX",
        help="smaller faces (shorter box side) are found but not described: null attributes "
        f"(default: {DESCRIBE_MIN_FACE_PX}, as the daemon's attributes.min_face_px; 0: every face)",
    )
    p.add_argument(
        "--min-gender-score",
        type=_non_negative_float,
        default=MIN_GENDER_SCORE,
        metavar="SCORE",
        help=f"a gender scored under this is not named: null (default: {MIN_GENDER_SCORE}, as the daemon's "
        "attributes.min_gender_score; 0: always named)",
    )
    _add_analyzer_options(p)
    p.set_defaults(func=_analyze)

    p = sub.add_parser(
        parents=[verbose],
        name="eval",
        help="accuracy on labelled face images (--utkface) or visitor counts on labelled clips (--clips)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--utkface",
        type=Path,
        metavar="DIR",
        help="face images with labels.csv (file, age, gender, race) or UTKFace file names AGE_GENDER_RACE_DATE.jpg",
    )
    what.add_argument(
        "--clips",
        type=Path,
        metavar="DIR",
        help="videos with labels.json ({clip: {visitors, female, male, faces_per_frame}}): the daemon's counts",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="with --clips: score this config's detector, tracking and attribute settings (default: the defaults)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument(
        "--canvas",
        type=int,
        default=600,
        help="centre each crop on a mid-grey canvas this big (0: raw crops; default: 600)",
    )
    p.add_argument("--int8-only", action="store_true", help="skip the float side-by-side run")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N images (with --face-px: a seeded sample of N stratified by age band, gender, race)",
    )
    p.add_argument(
        "--face-px",
        metavar="S,S,...",
        default=None,
        help="accuracy against face size: each crop downscaled so the CROP is S px wide (UTKFace crops are tight, "
        "so the detected box is about the crop; the table gives the median box side too), placed on a 640x480 "
        "frame and run through detector and attributes; one row per S (4-400), e.g. 16,20,24,32,40,48,64,80,96,128. "
        "Ignores --canvas; int8 only unless --with-float. Costs one analysis per image and size (about 150 ms "
        "each on a busy 2-core machine: use --limit)",
    )
    p.add_argument("--with-float", action="store_true", help="with --face-px: also run the float32 models")
    p.add_argument(
        "--frame",
        default="640x480",
        help="with --face-px: the frame size faces are placed in (default: 640x480); with --min-face the "
        "detection plan for that size runs",
    )
    _add_analyzer_options(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        parents=[verbose], name="bench", help="per-stage latency (p50/p90), frames per second and peak RSS"
    )
    p.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="photos or videos (synthetic frames always run)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--repeats", type=int, default=10, help="runs per frame (default: 10)")
    p.add_argument("--max-frames", type=int, default=30, help="frames read from each video (default: 30)")
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="sustained daemon pipeline on synthetic video (detection plan, track, attributes, windows)",
    )
    p.add_argument("--faces", default="0,1,5,10", help="faces in view for --pipeline (default: 0,1,5,10)")
    p.add_argument(
        "--tile-interval",
        type=int,
        default=None,
        help="--pipeline: frames between searches of the same tile (default: the daemon's detector.tile_interval)",
    )
    p.add_argument(
        "--resolution", default="640x480", help="frame sizes for --pipeline, e.g. 640x480,1280x720 (default: 640x480)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="media seconds per --pipeline run (default: 60)")
    p.add_argument("--fps", type=float, default=15.0, help="media frame rate for --pipeline (default: 15)")
    _add_analyzer_options(p, repeatable=True)
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (
        logging.DEBUG
        if args.verbose
        else logging.INFO
        if args.command in ("run", "collect", "dashboard")
        else logging.WARNING
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        return int(args.func(args))
    except Exception as exc:
        reported = _operator_error(exc, args.command)
        if reported is None:
            raise
        status, message = reported
        sys.stderr.write(message + "\n")
        return status


def _operator_error(exc: Exception, command: str) -> tuple[int, str] | None:
    """Exit status and message for an error an operator can act on; None for a bug (re-raised
    with its traceback).

    The error types are imported here, not at the top: ``analyze`` must not pay for the config,
    sink (paho-mqtt) and source modules it never uses (docs/performance.md, "Memory").
    """
    from edge.config import ConfigError
    from edge.sinks import SinkError
    from edge.sources import SourceError
    from edge.state_lock import StateDirBusy
    from edge.state_store import StorageError

    if isinstance(exc, ConfigError):  # its message names the file and line already
        return 2, str(exc)
    if isinstance(exc, (ModelError, BackendUnavailable, SourceError, SinkError, StateDirBusy, ValueError)):
        return 2, f"edge {command}: {exc}"
    if isinstance(exc, StorageError):  # may clear by itself (a full disk): 1, so the service manager retries
        return 1, f"edge {command}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
