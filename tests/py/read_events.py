"""Reads N messages from a topic with confluent-kafka (a client slate did not write) and prints
each as a JSON line {"key": ..., "value": <decoded JSON or null>, "partition": .., "offset": ..}.

usage: read_events.py BOOTSTRAP TOPIC N [TIMEOUT_SECONDS]
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition


def main() -> int:
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"py-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    meta = consumer.list_topics(topic, timeout=10)
    partitions = meta.topics[topic].partitions.keys()
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"consume error: {msg.error()}", file=sys.stderr)
            return 2
        value = msg.value()
        print(json.dumps({
            "key": msg.key().decode() if msg.key() else None,
            "value": json.loads(value) if value is not None else None,
            "partition": msg.partition(),
            "offset": msg.offset(),
        }), flush=True)
        seen += 1
    consumer.close()
    if seen < n:
        print(f"only {seen} of {n} messages arrived within {timeout}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
