"""Jurisdiction and context modes (``privacy``): ``edge check`` refuses what the EU AI Act prohibits
or conditions, naming the key, the value and the article; the defaults impose nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.cli import main
from edge.config import ConfigError
from edge.privacy_config import PrivacyConfig
from edge.settings import parse_config


def _doc(tmp_path: Path, video: Path, privacy: dict[str, Any] | None, attributes: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device_id": "lobby-1",
        "state_dir": str(tmp_path / "state"),
        "source": {"type": "file", "path": str(video)},
        "sink": {"type": "jsonl", "path": str(tmp_path / "out/windows.jsonl")},
        "attributes": attributes,
    }
    if privacy is not None:
        doc["privacy"] = privacy
    return doc


def check(
    tmp_path: Path,
    video: Path,
    capsys: pytest.CaptureFixture[str],
    privacy: dict[str, Any] | None,
    **attributes: bool,
) -> tuple[int, str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path, video, privacy, attributes)), encoding="utf-8")
    code = main(["check", "--config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------- refused


def test_eu_refuses_ethnicity(tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(
        tmp_path, video, capsys, {"region": "eu", "notice_acknowledged": True}, ethnicity=True, expression=False
    )
    assert (code, out) == (2, "")
    assert err.startswith("config error: attributes.ethnicity: expected false with privacy.region eu")
    assert "EU AI Act Art. 5(1)(g)" in err and "got True" in err


@pytest.mark.parametrize("on", ["expression", "gender", "age"])
def test_eu_needs_the_notice_acknowledged_for_each_estimate(
    tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str], on: str
) -> None:
    switches = {"expression": False, "gender": False, "age": False, on: True}
    code, out, err = check(tmp_path, video, capsys, {"region": "eu"}, **switches)
    assert (code, out) == (2, "")
    assert err.startswith("config error: privacy.notice_acknowledged: expected true with privacy.region eu")
    assert f"attributes.{on} on" in err
    assert "EU AI Act Art. 50(3)" in err and "set privacy.notice_acknowledged: true" in err and "got False" in err


@pytest.mark.parametrize("region", ["none", "eu"])
@pytest.mark.parametrize("context", ["workplace", "education"])
def test_workplace_and_education_refuse_expression(
    tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str], region: str, context: str
) -> None:
    privacy = {"region": region, "context": context, "notice_acknowledged": True}
    code, out, err = check(tmp_path, video, capsys, privacy, expression=True)
    assert (code, out) == (2, "")
    assert err.startswith(f"config error: attributes.expression: expected false with privacy.context {context}")
    assert "EU AI Act Art. 5(1)(f)" in err and "got True" in err


def test_every_broken_rule_is_named_at_once(tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(tmp_path, video, capsys, {"region": "eu", "context": "education"}, ethnicity=True)
    assert (code, out) == (2, "")
    assert err.startswith("config error: 3 problems in ")
    for article in ("Art. 5(1)(g)", "Art. 5(1)(f)", "Art. 50(3)"):
        assert article in err


def test_edge_run_refuses_too(tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_doc(tmp_path, video, {"region": "eu"}, {"ethnicity": True})), encoding="utf-8")
    code = main(["run", "--config", str(path)])
    assert code == 2
    assert "Art. 5(1)(g)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- allowed


@pytest.mark.parametrize(
    ("privacy", "attributes"),
    [
        (None, {}),  # the defaults: permissive
        ({}, {"ethnicity": True}),  # ethnicity outside the EU mode: the operator's call
        ({"region": "eu", "notice_acknowledged": True}, {}),  # eu, informed, no ethnicity
        ({"region": "eu"}, {"expression": False, "gender": False, "age": False}),  # eu, nothing to inform of
        ({"context": "workplace"}, {"expression": False}),
        ({"region": "eu", "context": "education", "notice_acknowledged": True}, {"expression": False}),
    ],
)
def test_allowed_combinations_are_ok(
    tmp_path: Path,
    video: Path,
    capsys: pytest.CaptureFixture[str],
    privacy: dict[str, Any] | None,
    attributes: dict[str, bool],
) -> None:
    code, out, err = check(tmp_path, video, capsys, privacy, **attributes)
    assert (code, err) == (0, "")
    assert out.startswith(f"{tmp_path / 'config.yaml'}: ok (device lobby-1")


# ----------------------------------------------------------------- the section itself


def test_defaults() -> None:
    config = parse_config({"device_id": "d", "source": {"type": "picamera2"}})
    assert config.privacy == PrivacyConfig(region="none", context="public", notice_acknowledged=False)


@pytest.mark.parametrize(
    ("privacy", "path", "expected"),
    [
        ({"region": "us"}, "privacy.region", "one of none, eu"),
        ({"context": "shop"}, "privacy.context", "one of public, workplace, education"),
        ({"notice_acknowledged": "yes"}, "privacy.notice_acknowledged", "true or false"),
        ({"notice": True}, "privacy.notice", "one of the keys region, context, notice_acknowledged"),
    ],
)
def test_parse_errors_name_the_key_path(privacy: dict[str, Any], path: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": "d", "source": {"type": "picamera2"}, "privacy": privacy})
    assert [e.path for e in info.value.errors] == [path]
    assert info.value.expected == expected


def test_cross_section_error_names_the_attribute_key() -> None:
    doc = {"device_id": "d", "source": {"type": "picamera2"}, "privacy": {"context": "Workplace"}}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert [(e.path, e.value) for e in info.value.errors] == [("attributes.expression", True)]
    assert "Art. 5(1)(f)" in str(info.value)
