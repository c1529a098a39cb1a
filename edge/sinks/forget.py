"""``edge forget``: remove a device from Home Assistant and from the broker's retained state.

A device taken out of service leaves retained messages behind: its discovery
configs (Home Assistant keeps showing its entities), ``status`` and ``health``.
Clearing a retained message means publishing an empty retained payload to its
topic. MQTT has no "end of retained messages" marker, so after subscribing we
publish a marker to a topic we are subscribed to: the broker delivers it after
the retained messages of the same subscription, so when it arrives every
retained message has been seen.
"""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.sinks.base import SinkError
from edge.sinks.discovery import DiscoveryDevice
from edge.sinks.mqtt import MqttSinkConfig
from edge.sinks.mqtt_link import secure

log = logging.getLogger(__name__)


def forget_device(config: MqttSinkConfig, device_id: str, timeout_s: float = 10.0) -> list[str]:
    """Clear every retained discovery config, ``status`` and ``health`` of ``device_id``.

    Run it with the device's daemon stopped (a running daemon announces itself again at its
    next connect). Returns the topics cleared; raises SinkError when the broker cannot be
    reached or does not answer within ``timeout_s``.
    """
    prefix = config.topic_prefix or f"edge/{device_id}/"
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    device = DiscoveryDevice(device_id, device_id, "", config.discovery.prefix, prefix + "counts", prefix + "status")
    marker = f"{prefix}forget/{uuid.uuid4().hex}"
    filters = [device.config_filter, prefix + "status", prefix + "health", marker]
    found: list[str] = []
    done = threading.Event()
    failure: list[str] = []

    def on_connect(
        client: mqtt.Client, _: object, __: mqtt.ConnectFlags, rc: ReasonCode, ___: Properties | None
    ) -> None:
        if rc.is_failure:
            failure.append(f"the broker refused the connection: {rc}")
            done.set()
            return
        client.subscribe([(f, 1) for f in filters])

    def on_subscribe(client: mqtt.Client, _: object, __: int, codes: list[ReasonCode], ___: Properties | None) -> None:
        if any(c.is_failure for c in codes):
            failure.append(f"the broker refused the subscription: {', '.join(str(c) for c in codes)}")
            done.set()
            return
        client.publish(marker, b"end", qos=1)

    def on_message(client: mqtt.Client, _: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == marker:
            done.set()
        elif message.retain and message.payload:
            found.append(message.topic)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{device_id}-forget-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    secure(client, config)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(config.host, config.port, config.keepalive)
    except OSError as exc:
        raise SinkError(f"cannot connect to MQTT broker {config.host}:{config.port}: {exc}") from exc
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise SinkError(f"MQTT broker {config.host}:{config.port} did not answer within {timeout_s:g} s")
        if failure:
            raise SinkError(f"MQTT broker {config.host}:{config.port}: {failure[0]}")
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in found]
        for info in infos:
            info.wait_for_publish(timeout=timeout_s)
        for topic in found:
            log.info("cleared %s", topic)
        return found
    finally:
        client.disconnect()
        client.loop_stop()
