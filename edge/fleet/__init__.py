"""The fleet side: a collector from the broker into PostgreSQL, and a read-only dashboard.

Devices publish anonymised windows to an MQTT broker; ``edge collect`` stores
each exactly once in PostgreSQL, ``edge dashboard`` plots what the database
holds. Both are built on the engines (mosquitto or any MQTT 5 broker,
PostgreSQL); nothing here is a store of its own.
"""
