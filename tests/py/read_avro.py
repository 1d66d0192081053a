"""Reads a whole topic of Confluent-framed Avro records with confluent-kafka's AvroDeserializer
(schemas fetched from the registry by id) and prints one JSON line per message:
{"key": ..., "value": <record as JSON or null for a tombstone>}. Stops after the topic has been
idle for 2 s or TIMEOUT seconds have passed. With READER_SCHEMA_FILE, records are resolved to that
reader schema (as a consumer built against an older contract would read them).

usage: read_avro.py BOOTSTRAP TOPIC REGISTRY_URL [TIMEOUT_SECONDS [READER_SCHEMA_FILE]]
"""
import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(v):
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(type(v))


def main() -> int:
    bootstrap, topic, registry = sys.argv[1], sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    reader = open(sys.argv[5]).read() if len(sys.argv) > 5 else None
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}), schema_str=reader)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"py-avro-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < 2.0:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            print(f"consume error: {msg.error()}", file=sys.stderr)
            return 2
        last = time.monotonic()
        value = None
        if msg.value() is not None:
            value = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
        print(json.dumps({"key": msg.key().decode(), "value": value}, default=plain), flush=True)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
