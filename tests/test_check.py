"""``edge check``: configs that ``edge run`` would refuse at once fail here too, with real files and sockets."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from mqtt_broker import HOST, Broker, TlsFiles, free_port

import edge
from edge.cli import main

EXAMPLE = Path(edge.__file__).parent / "config.example.yaml"
PICAMERA2_PRESENT = importlib.util.find_spec("picamera2") is not None


def write_config(tmp_path: Path, source: dict[str, Any], sink: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {"device_id": "lobby-1", "state_dir": str(tmp_path / "state"), "source": source}
    if sink is not None:
        doc["sink"] = sink
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def check(capsys: pytest.CaptureFixture[str], config: Path, command: str = "check") -> tuple[int, str, str]:
    code = main([command, "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def file_source(video: Path) -> dict[str, Any]:
    return {"type": "file", "path": str(video)}


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def new_key(path: Path, passphrase: str | None = None) -> Path:
    plain = path.with_suffix(".plain") if passphrase is not None else path
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", plain)
    if passphrase is not None:
        openssl("pkey", "-in", plain, "-aes256", "-passout", f"pass:{passphrase}", "-out", path)
    return path


# ----------------------------------------------------------------- sources


def test_real_video_file_is_ok(tmp_path: Path, file_source: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, file_source, {"type": "jsonl", "path": str(tmp_path / "out/windows.jsonl")})
    code, out, err = check(capsys, config)
    assert (code, err) == (0, "")
    assert out.startswith(f"{config}: ok (device lobby-1, site default, source file, sink jsonl")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "a folder"),
    ],
)
def test_missing_video_file_is_an_error(
    tmp_path: Path, make: Callable[[Path], Path], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path)
    code, out, err = check(capsys, write_config(tmp_path, {"type": "file", "path": str(path)}))
    assert (code, out) == (2, "")
    assert err == f"error: source.path: expected a video (or image) file OpenCV can decode, got {str(path)!r} ({why})\n"


def test_corrupt_video_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clip.avi"
    path.write_bytes(np.random.default_rng(7).bytes(64 * 1024))
    code, out, err = check(capsys, write_config(tmp_path, {"type": "file", "path": str(path)}))
    assert (code, out) == (2, "")
    assert err.startswith(f"error: source.path: expected a video (or image) file OpenCV can decode, got {str(path)!r}")


@pytest.mark.skipif(PICAMERA2_PRESENT, reason="picamera2 is installed here")
def test_missing_picamera2_is_an_error_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, write_config(tmp_path, {"type": "picamera2"}))
    assert (code, out) == (2, "")
    assert err.startswith("error: source.type: expected the picamera2 Python module to be importable, got 'picamera2'")
    assert "sudo apt install python3-picamera2" in err and "--system-site-packages" in err


@pytest.mark.skipif(PICAMERA2_PRESENT, reason="picamera2 is installed here")
def test_example_config_needs_picamera2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, EXAMPLE)
    assert (code, out) == (2, "")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: source.type: ")
    assert "sudo apt install python3-picamera2" in errors[0]


@pytest.mark.parametrize("device", [99, "/dev/video99"])
def test_missing_v4l2_device_is_an_error(tmp_path: Path, device: int | str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, write_config(tmp_path, {"type": "v4l2", "device": device}))
    assert (code, out) == (2, "")
    assert err.startswith("error: source.device: expected an existing V4L2 camera device, got '/dev/video99' (no such")
    assert "v4l2-ctl --list-devices" in err


def test_a_device_that_is_not_a_camera_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, write_config(tmp_path, {"type": "v4l2", "device": "/dev/null"}))
    assert code == 2
    assert "error: source.device: " in err and "is not video4linux" in err


def test_unreachable_stream_is_a_warning_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"rtsp://admin:hunter2@{HOST}:{free_port()}/stream1"
    code, out, err = check(capsys, write_config(tmp_path, {"type": "rtsp", "url": url}))
    assert code == 0 and ": ok (" in out
    assert err.startswith("warning: source.url: expected a reachable stream host, got 'rtsp://admin:***@")
    assert "refused" in err and "hunter2" not in err


# ----------------------------------------------------------------- MQTT host


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("mqtt://broker.local", "only the broker host, not a URL: host: 'broker.local' (set port and tls"),
        ("mqtts://broker.local:8883", "(set port and tls as keys of their own: port: 8883, tls: true)"),
        ("broker..local", "without empty labels"),
        ("x" * 64 + ".local", "at most 63 characters"),
        (".".join(["abcdefghi"] * 26), "at most 253 characters"),
        ("brökér.local", "printable ASCII"),
        ("broker.local:1883", "set the port with port:"),
        ("-broker.local", "letters, digits and '-'"),
        ("300.1.2.3", "an IPv4 address of four numbers"),
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_broker_host_is_refused_by_validation(
    tmp_path: Path, file_source: dict[str, Any], host: str, says: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, file_source, {"type": "mqtt", "host": host})
    code, out, err = check(capsys, config, command)
    assert (code, out) == (2, "")
    assert err.startswith("config error: sink.host: expected ")
    assert says in err and f"got {host[:40]!r}"[:-1] in err  # long values are shortened


@pytest.mark.parametrize("host", [HOST, "::1", "localhost"])
def test_unreachable_broker_is_a_warning(
    tmp_path: Path, file_source: dict[str, Any], host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, out, err = check(capsys, write_config(tmp_path, file_source, {"type": "mqtt", "host": host, "port": port}))
    assert code == 0 and ", sink mqtt," in out
    assert err.startswith(
        f"warning: sink.host: expected an MQTT broker accepting connections on port {port}, got {host!r} ("
    )
    assert err.count("\n") == 1 and "may be transient" in err


def test_unresolvable_broker_is_a_warning(
    tmp_path: Path, file_source: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, file_source, {"type": "mqtt", "host": "broker.invalid"})  # RFC 2606: never resolves
    code, out, err = check(capsys, config)
    assert code == 0 and ": ok (" in out
    assert err.startswith("warning: sink.host: ") and "does not resolve" in err


def test_reachable_broker_is_ok(
    tmp_path: Path, file_source: dict[str, Any], mqtt_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, file_source, {"type": "mqtt", "host": HOST, "port": mqtt_broker.port})
    code, out, err = check(capsys, config)
    assert (code, err) == (0, "")
    assert ", sink mqtt," in out


# ----------------------------------------------------------------- TLS files


def tls_config(tmp_path: Path, source: dict[str, Any], port: int, **tls: Any) -> Path:
    return write_config(
        tmp_path, source, {"type": "mqtt", "host": HOST, "port": port, "tls": {k: str(v) for k, v in tls.items()}}
    )


def test_good_tls_files_against_a_tls_broker_are_ok(
    tmp_path: Path,
    file_source: dict[str, Any],
    tls_files: TlsFiles,
    broker_factory: Callable[..., Broker],
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = broker_factory(tls=tls_files)
    assert broker.tls_port is not None
    config = tls_config(
        tmp_path, file_source, broker.tls_port, ca_file=tls_files.ca, cert_file=tls_files.cert, key_file=tls_files.key
    )
    code, out, err = check(capsys, config)
    assert (code, err) == (0, "")
    assert ": ok (" in out


def test_missing_ca_file_is_an_error(
    tmp_path: Path, file_source: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "nope-ca.pem"
    code, out, err = check(capsys, tls_config(tmp_path, file_source, free_port(), ca_file=ca))
    assert (code, out) == (2, "")
    assert f"error: sink.tls.ca_file: expected a PEM file of CA certificates, got {str(ca)!r} (no such file)\n" in err


def test_garbage_ca_file_is_an_error(
    tmp_path: Path, file_source: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    code, out, err = check(capsys, tls_config(tmp_path, file_source, free_port(), ca_file=ca))
    assert (code, out) == (2, "")
    assert f"error: sink.tls.ca_file: expected a PEM file of CA certificates, got {str(ca)!r} (" in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize(
    ("case", "key", "says"),
    [
        ("garbage cert", "cert_file", "expected a PEM client certificate"),
        ("garbage key", "key_file", "expected a PEM private key"),
        ("other key", "key_file", "expected the private key of "),
        ("encrypted key", "key_file", "the key is encrypted"),
        ("missing key", "key_file", "(no such file)"),
    ],
)
def test_bad_client_pair_is_an_error_naming_the_file(
    tmp_path: Path,
    file_source: dict[str, Any],
    tls_files: TlsFiles,
    case: str,
    key: str,
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert, private_key = tls_files.cert, tls_files.key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    if case == "garbage cert":
        cert = garbage
    elif case == "garbage key":
        private_key = garbage
    elif case == "other key":
        private_key = new_key(tmp_path / "other.key")
    elif case == "encrypted key":
        private_key = new_key(tmp_path / "locked.key", passphrase="s3cret")
    else:
        private_key = tmp_path / "missing.key"
    config = tls_config(tmp_path, file_source, free_port(), cert_file=cert, key_file=private_key)
    code, out, err = check(capsys, config)  # an encrypted key must not prompt for a passphrase
    assert (code, out) == (2, "")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: sink.tls.{key}: ") and says in errors[0]


# ----------------------------------------------------------------- sinks and the registry


def test_jsonl_path_under_a_file_is_an_error(
    tmp_path: Path, file_source: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where a folder should be\n")
    config = write_config(tmp_path, file_source, {"type": "jsonl", "path": str(blocker / "windows.jsonl")})
    code, out, err = check(capsys, config)
    assert (code, out) == (2, "")
    assert err.startswith("error: sink.path: ") and f"{blocker} is a file, not a folder" in err


def test_missing_or_corrupt_models_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.models import DEFAULT_DIR

    models = tmp_path / "models"
    shutil.copytree(DEFAULT_DIR, models, ignore=shutil.ignore_patterns("*_float32.tflite"))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
    writer.release()
    base = {"device_id": "d", "source": {"type": "file", "path": str(video)}, "sink": {"type": "jsonl", "path": "-"}}

    def check(models_cfg: dict) -> tuple[int, str]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**base, "models": models_cfg}))
        code = main(["check", "--config", str(path)])
        return code, capsys.readouterr().err

    assert check({"dir": str(models)})[0] == 0
    code, err = check({"dir": str(models), "variant": "float"})
    assert code == 2 and "models.variant" in err and "--model-dir" in err
    target = models / "age_gender_int8.tflite"
    target.write_bytes(target.read_bytes()[:-10])
    code, err = check({"dir": str(models)})
    assert code == 2 and "models.dir" in err and str(target) in err
    # The face mesh is checked like the others; a set without it (an older one) is refused only while
    # attention is on, which needs it for head pose.
    target.write_bytes((DEFAULT_DIR / "age_gender_int8.tflite").read_bytes())
    mesh = models / "facemesh_int8.tflite"
    mesh.write_bytes(b"not a model")
    code, err = check({"dir": str(models)})
    assert code == 2 and str(mesh) in err
    manifest = json.loads((models / "manifest.json").read_text())
    del manifest["models"]["face_mesh"]
    (models / "manifest.json").write_text(json.dumps(manifest))
    code, err = check({"dir": str(models)})
    assert code == 2 and "'face_mesh' is not in" in err

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, "models": {"dir": str(models)}, "attention": {"enabled": False}}))
    assert main(["check", "--config", str(path)]) == 0
    # The person detector: needed while people are counted (the default), not otherwise.
    (models / "movenet_multipose_int8.tflite").write_bytes(b"truncated")
    assert main(["check", "--config", str(path)]) == 2
    assert "movenet_multipose_int8.tflite" in capsys.readouterr().err
    off = {**base, "models": {"dir": str(models)}, "attention": {"enabled": False}, "people": {"enabled": False}}
    path.write_text(yaml.safe_dump(off))
    assert main(["check", "--config", str(path)]) == 0
