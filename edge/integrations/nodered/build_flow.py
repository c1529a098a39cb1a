#!/usr/bin/env python3
"""Write edge-windows.flow.json (the Node-RED flow) with dedup.js embedded.

    python3 edge/integrations/nodered/build_flow.py           # (re)write the flow file
    python3 edge/integrations/nodered/build_flow.py --check   # exit 1 if the flow file is out of date

tests/test_nodered.py runs the --check, so edit dedup.js or this file, never the JSON.

The flow is kept as data here rather than hand-edited JSON so that every
setting that matters for at-least-once delivery is next to the reason for it.
Node and tab ids are fixed: the persistent context is stored per
<flow id>/<node id>, so changing an id would orphan the de-dup state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLOW_FILE = HERE / "edge-windows.flow.json"

TAB = "edge_windows_tab"
BROKER = "edge_broker"
MQTT_IN = "edge_counts_in"
DEDUP = "edge_dedup"
OUT_FILE = "edge_accepted_file"
DROP_FILE = "edge_dropped_file"

# Fixed MQTT client id: the broker keys the persistent session (subscription
# plus queued QoS 1 messages) on it. A random id (Node-RED's default when the
# field is empty) means a new, empty session on every start. Two consumers
# sharing this id on one broker would take the session from each other.
CLIENT_ID = "edge-nodered-windows"

# MQTT v5 session expiry: how long the broker keeps the session (and queues
# windows for it) while Node-RED is down. In v5, clean start off alone is NOT
# enough: with expiry 0 (Node-RED's default) the session ends with the
# connection and nothing is queued.
SESSION_EXPIRY_S = 7 * 24 * 3600


def flow() -> list[dict[str, Any]]:
    dedup_js = (HERE / "dedup.js").read_text()
    return [
        {
            "id": TAB,
            "type": "tab",
            "label": "edge windows",
            "disabled": False,
            "info": "Consumes edge/<device>/counts windows, de-duplicates on (device, stream, seq) "
            "with persistent context, appends accepted windows to $EDGE_OUT as JSON lines.",
            "env": [],
        },
        {
            "id": BROKER,
            "type": "mqtt-broker",
            "name": "edge broker",
            # Substituted from the environment when the flow starts; an unset
            # variable is left as the literal "${...}" text (no error).
            "broker": "${EDGE_MQTT_HOST}",
            "port": "${EDGE_MQTT_PORT}",
            "clientid": CLIENT_ID,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "5",
            "keepalive": "30",
            # Persistent session: keep subscription and queued messages across
            # disconnects (MQTT.js "clean: false"; in v5 this is Clean Start = 0).
            "cleansession": False,
            # Default true: on stop the node UNSUBSCRIBEs, which deletes the
            # session's subscription, so windows published while Node-RED is
            # down are not queued. false leaves the subscription in the session.
            "autoUnsubscribe": False,
            "sessionExpiry": str(SESSION_EXPIRY_S),
            "birthTopic": "",
            "birthQos": "0",
            "birthRetain": "false",
            "birthPayload": "",
            "birthMsg": {},
            "closeTopic": "",
            "closeQos": "0",
            "closeRetain": "false",
            "closePayload": "",
            "closeMsg": {},
            "willTopic": "",
            "willQos": "0",
            "willRetain": "false",
            "willPayload": "",
            "willMsg": {},
            "userProps": "",
        },
        {
            "id": MQTT_IN,
            "type": "mqtt in",
            "z": TAB,
            "name": "edge/+/counts",
            "topic": "edge/+/counts",
            # QoS 1: what the daemon publishes with (delivery QoS is the minimum
            # of publish and subscribe QoS, so 2 would buy nothing). QoS 0 would
            # not be queued for the offline session at all.
            "qos": "1",
            # Parse JSON; a payload that is not JSON is logged as an error and dropped.
            "datatype": "json",
            "broker": BROKER,
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "x": 130,
            "y": 100,
            "wires": [[DEDUP]],
        },
        {
            "id": DEDUP,
            "type": "function",
            "z": TAB,
            "name": "dedup (device, stream, seq)",
            "func": dedup_js,
            "outputs": 2,
            "timeout": 0,
            "noerr": 0,
            "initialize": "",
            "finalize": "",
            "libs": [],
            "x": 360,
            "y": 100,
            "wires": [[OUT_FILE], [DROP_FILE]],
        },
        {
            "id": OUT_FILE,
            "type": "file",
            "z": TAB,
            "name": "accepted -> $EDGE_OUT",
            # filenameType env: the path is read from the environment variable.
            "filename": "EDGE_OUT",
            "filenameType": "env",
            "appendNewline": True,  # one JSON object per line
            "createDir": True,
            "overwriteFile": "false",
            "encoding": "none",  # bytes as is (UTF-8 JSON)
            "x": 620,
            "y": 80,
            "wires": [],
        },
        {
            "id": DROP_FILE,
            "type": "file",
            "z": TAB,
            "name": "dropped -> $EDGE_DROPPED",
            "filename": "EDGE_DROPPED",
            "filenameType": "env",
            "appendNewline": True,
            "createDir": True,
            "overwriteFile": "false",
            "encoding": "none",  # bytes as is (UTF-8 JSON)
            "x": 630,
            "y": 120,
            "wires": [],
        },
    ]


def render() -> str:
    return json.dumps(flow(), indent=4) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if FLOW_FILE.read_text() != text:
            print(f"{FLOW_FILE} is out of date: run python3 {Path(__file__).resolve()}", file=sys.stderr)
            return 1
        return 0
    FLOW_FILE.write_text(text)
    print(f"wrote {FLOW_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
