"""The Home Assistant check reads HA's log: what about our messages fails it, and what is HA's own
timing noise on a busy machine does not (the check's functional assertions stand on their own)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "ha"))
from check_ha import DEVICE_ID, log_records, problems, sort_problems  # noqa: E402

ENTITY = f"sensor.{DEVICE_ID.replace('-', '_')}_age_45_54"
LOG = f"""\
2026-12-05 01:00:00.001 INFO (MainThread) [homeassistant.bootstrap] Home Assistant initialized in 12.3s
2026-12-05 01:00:01.002 WARNING (MainThread) [homeassistant.helpers.entity] Updating state for {ENTITY} \
(<class 'homeassistant.components.mqtt.sensor.MqttSensor'>) took 0.432 seconds. Please create a bug report
2026-12-05 01:00:02.003 WARNING (MainThread) [homeassistant.helpers.entity] Update of {ENTITY} is taking over 10 seconds
2026-12-05 01:00:02.503 WARNING (MainThread) [homeassistant.components.mqtt.client] No ACK from MQTT server \
in 10 seconds (mid: 69)
2026-12-05 01:00:02.803 WARNING (MainThread) [homeassistant.components.mqtt.client] Disconnected from MQTT server (rc 7)
2026-12-05 01:00:03.004 ERROR (MainThread) [homeassistant.components.mqtt.models] Error parsing value: 'dict object' \
has no attribute 'visitors' (value: {{}}, template: {{{{ value_json.visitors }}}})
2026-12-05 01:00:04.005 WARNING (MainThread) [homeassistant.components.http] Login attempt failed
Traceback (most recent call last):
  File "x.py", line 1
"""


def test_timing_warnings_are_noise_and_a_template_error_about_our_payload_fails_the_check() -> None:
    assert len(list(log_records(LOG))) == 7
    unrelated, relevant, other = sort_problems(problems(LOG))
    assert len(unrelated) == 3 and all("seconds" in r for r in unrelated)
    # A lost broker connection is not timing noise: it fails the check like the template error.
    assert len(relevant) == 2 and "value_json.visitors" in relevant[1] and "Disconnected" in relevant[0]
    assert len(other) == 1 and other[0].endswith("line 1")  # the traceback stays with its record
