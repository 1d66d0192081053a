"""Third-party reader of the schema-evolution topic: confluent-kafka's AvroDeserializer, once
with each record's writer schema (fetched from the registry by the id in the Confluent framing)
and once with the v1 reader schema (fastavro schema resolution). Prints one JSON line per
message: {"writer": <record>, "v1": <record>}. Reads until EXPECTED messages or 30 s.

usage: schema_evolution_read.py BOOTSTRAP TOPIC REGISTRY_URL V1_SCHEMA_FILE EXPECTED
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
    bootstrap, topic, registry, v1_file, expected = sys.argv[1:6]
    client = SchemaRegistryClient({"url": registry})
    with open(v1_file, encoding="utf-8") as f:
        v1_reader = AvroDeserializer(client, schema_str=f.read())
    writer_reader = AvroDeserializer(client)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"py-schema-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    ctx = SerializationContext(topic, MessageField.VALUE)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < int(expected) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            print(f"consume error: {msg.error()}", file=sys.stderr)
            return 2
        seen += 1
        line = {"writer": writer_reader(msg.value(), ctx), "v1": v1_reader(msg.value(), ctx)}
        print(json.dumps(line, default=plain), flush=True)
    consumer.close()
    return 0 if seen == int(expected) else 3


if __name__ == "__main__":
    sys.exit(main())
