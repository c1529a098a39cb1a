"""Home Assistant MQTT discovery: the entities a device's config produces, and nothing else.

Discovery configs are retained on the broker, so they outlive the config that made
them: a breakdown switched off, or changed age brackets, would leave entities that
show an old figure as if it were current. The MQTT sink therefore announces the
complete set the current config produces at every connect, subscribes to its own
node's config topics, and clears (empty retained payload, which makes Home
Assistant remove the entity) every one it does not produce; ``edge forget`` clears
them all.

With attention on (``SinkContext.attention``) the device also has the viewer sensors (viewers,
their share, attention time) and one sensor per viewers-by cell; with it off they are not
produced, so the same clearing removes them. People counting (``SinkContext.people``) works the
same way: People, People with a face, Passers-by and Stayers while it is on, Crossings in/out while
a counting line is set, and an occupancy peak and mean per configured zone; switching it off,
removing the line or a zone leaves their configs unproduced, hence cleared.

Each sensor reads one number from the ``counts`` payload, is marked unavailable
with the device's ``status`` topic, subscribes at QoS 1, and expires (Home
Assistant shows it unavailable) when no window arrived for two window lengths
plus a minute, so a figure from before an outage never passes for a current one.
Counts are not retained: after Home Assistant restarts, sensors stay unavailable
until the next window.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.window import VIEWER_BREAKDOWNS

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
# Payload keys whose dict values are per-category counts (one sensor per cell).
BREAKDOWN_GROUPS = ("gender", "age", "expression", "ethnicity")
MANUFACTURER = "edge-face-analytics"
MODEL = "Edge face analytics"
_GROUP_NAMES = {"gender": "Gender", "age": "Age", "expression": "Expression", "ethnicity": "Ethnicity"}

# Cells of ``viewers_by.<group>`` carry this group prefix (the viewers among that breakdown's cell).
VIEWERS_BY = "viewers_by."

# object id, name, template path, extra fields (a "value_template" there replaces the path's)
_BASE_SENSORS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("visitors", "Visitors", ("visitors",), {"icon": "mdi:account-group"}),
    # Home Assistant's long-term statistics sum a total_increasing sensor per hour and day.
    (
        "visitors_today",
        "Visitors today",
        ("today", "visitors"),
        {"icon": "mdi:counter", "state_class": "total_increasing"},
    ),
    ("dwell_mean", "Mean dwell", ("dwell_s", "mean"), {"unit_of_measurement": "s", "device_class": "duration"}),
    ("faces_peak", "Peak faces", ("faces", "peak"), {"icon": "mdi:face-recognition"}),
)


def _percent(key: str) -> str:
    """A 0..1 share as a percentage; a null (suppressed) share renders "None", which Home Assistant
    shows as unknown (``None * 100`` would be a template error)."""
    return f"{{{{ (value_json.{key} * 100) | round(1) if value_json.{key} is number else none }}}}"


# Only in windows made with attention on (schema 3): announced while it is on, cleared otherwise.
_ATTENTION_SENSORS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("viewers", "Viewers", ("viewers",), {"icon": "mdi:eye"}),
    (
        "viewer_rate",
        "Viewer rate",
        ("viewer_rate",),
        {"unit_of_measurement": "%", "icon": "mdi:eye-check", "value_template": _percent("viewer_rate")},
    ),
    ("attention_sum", "Attention", ("attention_s", "sum"), {"unit_of_measurement": "s", "device_class": "duration"}),
    (
        "attention_median",
        "Median attention",
        ("attention_s", "median"),
        {"unit_of_measurement": "s", "device_class": "duration"},
    ),
)


# Only in windows made with people counting on (schema 4); crossings only with a counting line.
_PEOPLE_SENSORS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("people", "People", ("people",), {"icon": "mdi:walk"}),
    ("people_with_face", "People with a face", ("people_with_face",), {"icon": "mdi:face-recognition"}),
    ("passers_by", "Passers-by", ("passers_by",), {"icon": "mdi:run-fast"}),
    ("stayers", "Stayers", ("stayers",), {"icon": "mdi:human-handsdown"}),
)
_LINE_SENSORS: tuple[tuple[str, str, tuple[str, ...], dict[str, Any]], ...] = (
    ("crossings_in", "Crossings in", ("crossings", "in"), {"icon": "mdi:location-enter"}),
    ("crossings_out", "Crossings out", ("crossings", "out"), {"icon": "mdi:location-exit"}),
)


def _zone_sensors(zone: str) -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
    """A zone's occupancy peak and mean (zone names are ``[a-z0-9_]{1,32}``: topic-safe as they are)."""
    icon = {"icon": "mdi:vector-square"}
    return [
        (f"zone_{zone}_{figure}", f"{zone} occupancy {figure}", ("zones", zone, figure), icon)
        for figure in ("peak", "mean")
    ]


@dataclass(frozen=True)
class PeopleSensors:
    """The people sensors a config produces (people counting on): crossings with a ``line``, and
    occupancy for each of ``zones``."""

    line: bool = False
    zones: tuple[str, ...] = ()

    def sensors(self) -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
        out = list(_PEOPLE_SENSORS) + (list(_LINE_SENSORS) if self.line else [])
        return out + [s for zone in self.zones for s in _zone_sensors(zone)]


def expire_after_s(window_s: int) -> int:
    """Seconds without a window after which Home Assistant shows a sensor as unavailable: one late
    window is tolerated (a spool draining after an outage), two are not."""
    return 2 * window_s + 60


@dataclass(frozen=True)
class DiscoveryDevice:
    """What the discovery configs of one device refer to."""

    device_id: str
    name: str
    version: str
    prefix: str  # the discovery prefix, "homeassistant" by default
    counts_topic: str
    status_topic: str
    window_s: int | None = None  # None: sensors never expire
    health_topic: str | None = None  # where the device's health goes: its Storage sensor reads it

    @property
    def config_filter(self) -> str:
        """Subscription that receives every retained config of this device (and only this device)."""
        return f"{self.prefix}/sensor/{self.device_id}/+/config"

    def config_topic(self, object_id: str) -> str:
        return f"{self.prefix}/sensor/{self.device_id}/{object_id}/config"


def slug(text: str) -> str:
    """A topic level and entity id part: ``65+`` -> ``65_plus``, ``18-24`` -> ``18_24``."""
    text = text.replace("<=", "le").replace(">=", "ge").replace("<", "lt").replace(">", "gt").replace("+", "_plus")
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def _template(*path: str) -> str:
    parts = "".join(f".{p}" if p.isidentifier() else f"[{json.dumps(p)}]" for p in path)
    return "{{ value_json" + parts + " }}"


def cells_of(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The breakdown cells (group, key) a window payload carries, its viewers-by cells included."""
    cells = [(g, str(k)) for g in BREAKDOWN_GROUPS if isinstance(payload.get(g), Mapping) for k in payload[g]]
    by = payload.get("viewers_by")
    if isinstance(by, Mapping):
        cells += [(VIEWERS_BY + g, str(k)) for g in VIEWER_BREAKDOWNS if isinstance(by.get(g), Mapping) for k in by[g]]
    return cells


def viewer_cells(cells: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The viewers-by cells that go with breakdown cells (windows split gender and age by viewers)."""
    return [(VIEWERS_BY + g, k) for g, k in cells if g in VIEWER_BREAKDOWNS]


def _cell_sensor(group: str, key: str) -> tuple[str, str, tuple[str, ...], dict[str, Any]]:
    """Object id, name, template path and extra fields of one cell's sensor."""
    label = key.replace("+", " and over")
    if group.startswith(VIEWERS_BY):
        split = group.removeprefix(VIEWERS_BY)
        name = f"Viewers {_GROUP_NAMES.get(split, split).lower()} {label}"
        return f"viewers_{split}_{slug(key)}", name, ("viewers_by", split, key), {"icon": "mdi:eye"}
    return f"{group}_{slug(key)}", f"{_GROUP_NAMES.get(group, group)} {label}", (group, key), {}


def entity_configs(
    device: DiscoveryDevice,
    cells: Iterable[tuple[str, str]],
    base: bool = True,
    attention: bool = False,
    people: PeopleSensors | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for the base sensors (if ``base``; the viewer sensors too if ``attention``,
    the people sensors if ``people``) and one sensor per breakdown cell."""
    block = {
        "identifiers": [device.device_id],
        "name": device.name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": device.version,
    }
    sensors = list(_BASE_SENSORS) if base else []
    if base and attention:
        sensors += _ATTENTION_SENSORS
    if base and people is not None:
        sensors += people.sensors()
    sensors += [_cell_sensor(group, key) for group, key in cells]
    out = []
    if base and device.health_topic is not None:
        out.append((device.config_topic("storage"), _storage_config(device, block)))
    for obj, name, path, extra in sensors:
        config: dict[str, Any] = {
            "name": name,
            "unique_id": f"{device.device_id}_{obj}",
            # What Home Assistant before 2025.10 derives from the device and entity names anyway,
            # so the entity id is the same on every version.
            "default_entity_id": f"sensor.{slug(device.name)}_{slug(name)}",
            "state_topic": device.counts_topic,
            "value_template": _template(*path),
            "state_class": "measurement",
            "force_update": True,  # one state change per window, even when the number repeats
            "qos": 1,
            "availability_topic": device.status_topic,
            "payload_available": STATUS_ONLINE,
            "payload_not_available": STATUS_OFFLINE,
            "device": block,
            **extra,
        }
        if device.window_s is not None:
            config["expire_after"] = expire_after_s(device.window_s)
        out.append((device.config_topic(obj), config))
    return out


def _storage_config(device: DiscoveryDevice, block: dict[str, Any]) -> dict[str, Any]:
    """A diagnostic sensor that says ``failed`` when the device's state store cannot be written
    (its windows then go out from memory and the daemon restarts: a card to replace)."""
    assert device.health_topic is not None
    return {
        "name": "Storage",
        "unique_id": f"{device.device_id}_storage",
        "default_entity_id": f"sensor.{slug(device.name)}_storage",
        "state_topic": device.health_topic,  # retained: known as soon as Home Assistant subscribes
        "value_template": _template("storage"),
        "entity_category": "diagnostic",
        "icon": "mdi:sd",
        "qos": 1,
        "availability_topic": device.status_topic,
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "device": block,
    }


class Announcements:
    """The discovery configs a live device has announced, for the MQTT sink (thread-safe: the
    network thread announces at connect and checks retained configs, the drain thread announces
    cells that windows bring).

    ``cells`` are the breakdown cells the current config produces, announced at every connect; a
    window's cells outside them get no entity (a window made under an older config, spooled or
    recovered from a checkpoint); with no ``cells`` given, every cell a window carries does.
    ``attention``: windows carry viewers, so the viewer sensors and the viewers-by cells of
    ``cells`` are produced too; without it they are not, and a retained one is stale. ``people``
    likewise (None: people counting off); its sensors come from the config alone, never from a
    window (one spooled before the line or a zone was removed still carries them).
    """

    def __init__(
        self,
        device: DiscoveryDevice,
        cells: Iterable[tuple[str, str]],
        attention: bool = False,
        people: PeopleSensors | None = None,
    ) -> None:
        self.device = device
        self.attention = attention
        self.people = people
        self._lock = threading.Lock()
        cells = list(cells)
        self._cells: dict[tuple[str, str], None] = dict.fromkeys(cells + (viewer_cells(cells) if attention else []))
        self._configured = frozenset(self._cells)
        self._wanted: set[str] = set()  # config topics the current config produces

    def at_connect(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) for every entity of the device, as far as known now."""
        with self._lock:
            configs = entity_configs(self.device, list(self._cells), attention=self.attention, people=self.people)
            self._wanted.update(topic for topic, _ in configs)
        return configs

    def new_cells(self, payload: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) for the cells of a window not announced yet (and produced by the config)."""
        with self._lock:
            new = [c for c in cells_of(payload) if c not in self._cells and self._produced(c)]
            if not new:
                return []
            self._cells.update(dict.fromkeys(new))
            configs = entity_configs(self.device, new, base=False)
            self._wanted.update(topic for topic, _ in configs)
        return configs

    def _produced(self, cell: tuple[str, str]) -> bool:
        """Whether the current config produces ``cell`` (any cell, with no cells configured; never
        a viewers-by cell with attention off)."""
        if cell[0].startswith(VIEWERS_BY) and not self.attention:
            return False
        return not self._configured or cell in self._configured

    def stale(self, topic: str) -> bool:
        """A retained config of this device that the current config does not produce (to clear)."""
        with self._lock:
            return topic not in self._wanted
