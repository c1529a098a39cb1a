"""Fault: a hostile or broken config file is refused quickly, with the key, never at the first window."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_proc import run_edge

from edge.config import ConfigError
from edge.config.yaml_lines import MAX_CONFIG_BYTES
from edge.settings import load_config

BASE = "device_id: cam\nsource: {type: file, path: clip.mp4}\n"


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def alias_bomb(levels: int, width: int = 9) -> str:
    """YAML whose aliases expand to width**levels values (a "billion laughs")."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\ndevice_id: *a{levels}\nsource: {{type: file, path: clip.mp4}}\n"


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))
    # Through the command line, as an operator meets it; the old code ran for minutes at 2 GB here.
    run = run_edge("check", "--config", str(path))
    assert run.returncode == 2
    assert "values with YAML aliases (*name) expanded" in run.stderr


def test_a_smaller_bomb_names_the_key_with_a_short_excerpt_of_the_value(tmp_path: Path) -> None:
    errors = refused(tmp_path, alias_bomb(3)).errors  # ~15,000 values: under the bound, still no device id
    (error,) = (e for e in errors if e.path == "device_id")
    assert error.got.startswith("[[[['lol'") and len(error.got) <= 80
    assert error.line == 5


def test_a_recursive_alias_is_a_yaml_error_with_its_line(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + "site: &s [*s]\n")
    assert error.expected == "valid YAML" and error.line == 3


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    text = BASE + "# " + "x" * MAX_CONFIG_BYTES + "\n"
    error = refused(tmp_path, text)
    assert "at most 1 MB" in error.expected and error.got == f"{len(text)} bytes"


def test_a_5000_digit_integer_names_its_key_and_line(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + "aggregation:\n  window_s: " + "9" * 5000 + "\n")
    assert (error.path, error.line, error.got) == ("aggregation.window_s", 4, "an integer of 5000 digits")


def test_a_lone_surrogate_is_refused_at_start_not_at_the_first_window(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + 'site: "lobby \\uD800"\n')
    assert error.path == "site" and "valid UTF-8" in error.expected and error.line == 3


def test_a_huge_string_is_named_without_echoing_it(tmp_path: Path) -> None:
    error = refused(tmp_path, "device_id: " + "x" * 500_000 + "\nsource: {type: file, path: clip.mp4}\n")
    assert error.path == "device_id" and len(str(error)) < 400
