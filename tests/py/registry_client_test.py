"""Third-party client check: confluent-kafka's SchemaRegistryClient and Avro serdes against a
running slate registry (no broker needed).

Usage: registry_client_test.py http://127.0.0.1:PORT   (exit 0 = every check passed)
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "studio.payment.py"
SUBJECT = TOPIC + "-value"

V1 = {
    "type": "record",
    "name": "Payment",
    "namespace": "studio.finance",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "cents", "type": "long"},
    ],
}
# Adds a field without a default: not BACKWARD compatible with V1.
V2_INCOMPATIBLE = dict(V1, fields=V1["fields"] + [{"name": "payee", "type": "string"}])
# Adds a field with a default: BACKWARD compatible.
V2_COMPATIBLE = dict(
    V1, fields=V1["fields"] + [{"name": "payee", "type": "string", "default": ""}]
)


def avro(schema):
    return Schema(json.dumps(schema), "AVRO")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what)


def main(url):
    client = SchemaRegistryClient({"url": url})

    schema_id = client.register_schema(SUBJECT, avro(V1))
    check(isinstance(schema_id, int) and schema_id > 0, f"register returns an id ({schema_id})")
    check(client.register_schema(SUBJECT, avro(V1)) == schema_id, "re-register returns the same id")

    fetched = client.get_schema(schema_id)
    check(json.loads(fetched.schema_str) == V1, "get_schema returns the registered schema")
    check(fetched.schema_type == "AVRO", "schema type defaults to AVRO")

    latest = client.get_latest_version(SUBJECT)
    check(
        (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, SUBJECT),
        "get_latest_version returns id, version 1 and subject",
    )
    check(client.get_versions(SUBJECT) == [1], "get_versions lists version 1")
    check(SUBJECT in client.get_subjects(), "get_subjects lists the subject")
    found = client.lookup_schema(SUBJECT, avro(V1))
    check(found.schema_id == schema_id, "lookup_schema finds the schema")

    check(client.set_compatibility(SUBJECT, "BACKWARD") == {"compatibility": "BACKWARD"},
          "set_compatibility stores the subject level")
    check(client.get_compatibility(SUBJECT) == "BACKWARD", "get_compatibility reads it back")

    check(client.test_compatibility(SUBJECT, avro(V2_INCOMPATIBLE)) is False,
          "test_compatibility is False for a field without default")
    check(client.test_compatibility(SUBJECT, avro(V2_COMPATIBLE)) is True,
          "test_compatibility is True for a field with default")
    try:
        client.register_schema(SUBJECT, avro(V2_INCOMPATIBLE))
        raise AssertionError("incompatible registration was accepted")
    except SchemaRegistryError as err:
        check(err.http_status_code == 409 and err.error_code == 409,
              f"incompatible registration fails with 409 ({err.http_status_code}, {err.error_code})")

    try:
        client.get_schema(987654)
        raise AssertionError("unknown id was found")
    except SchemaRegistryError as err:
        check(err.http_status_code == 404 and err.error_code == 40403, "unknown id is 40403")

    serializer = AvroSerializer(client, json.dumps(V2_COMPATIBLE))
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    record = {"id": "p-1", "cents": 1250, "payee": "talent-7"}
    payload = serializer(record, ctx)
    check(payload[0] == 0, "serializer writes the magic byte")
    new_id = int.from_bytes(payload[1:5], "big")
    # A new client: the first one caches get_latest_version.
    latest = SchemaRegistryClient({"url": url}).get_latest_version(SUBJECT)
    check((latest.schema_id, latest.version) == (new_id, 2) and new_id != schema_id,
          "serializer auto-registered the compatible schema as version 2")
    check(deserializer(payload, ctx) == record, "deserializer reads the record back")

    # A fresh client (empty cache) must fetch the writer schema by id from the registry.
    fresh = AvroDeserializer(SchemaRegistryClient({"url": url}))
    check(fresh(payload, ctx) == record, "a cold deserializer resolves the id through the registry")

    references_and_modes(url)
    contexts(url)


def references_and_modes(url):
    """The client's reference and mode calls, as Confluent answers them."""
    from confluent_kafka.schema_registry import SchemaReference
    client = SchemaRegistryClient({"url": url})
    money = {"type": "record", "name": "Money", "namespace": "t.py",
             "fields": [{"name": "cents", "type": "long"}]}
    fee = {"type": "record", "name": "Fee", "namespace": "t.py", "fields": [{"name": "amount", "type": "t.py.Money"}]}
    client.register_schema("py-money", avro(money))
    ref = SchemaReference("t.py.Money", "py-money", 1)
    fee_id = client.register_schema("py-fee", Schema(json.dumps(fee), "AVRO", [ref]))
    check(client.get_referenced_by("py-money", 1) == [fee_id], "get_referenced_by lists the referencing schema id")
    try:
        client.delete_version("py-money", 1)
        raise AssertionError("a referenced version was deleted")
    except SchemaRegistryError as err:
        check(err.http_status_code == 422 and err.error_code == 42206, f"deleting a referenced version is 42206 ({err.error_code})")

    check(client.get_global_mode() == "READWRITE", "the global mode is READWRITE")
    check(client.update_mode("py-money", "READONLY") == "READONLY", "update_mode sets a subject READONLY")
    check(client.get_mode("py-money") == "READONLY", "get_mode reads it back")
    try:
        client.register_schema("py-money", avro({**money, "fields": money["fields"] + [{"name": "x", "type": "int", "default": 0}]}))
        raise AssertionError("a READONLY subject accepted a registration")
    except SchemaRegistryError as err:
        check(err.http_status_code == 422 and err.error_code == 42205, f"a READONLY subject refuses registrations ({err.error_code})")
    check(client.delete_mode("py-money") == "READONLY", "delete_mode answers the removed mode")
    client.register_schema("py-money", avro({**money, "fields": money["fields"] + [{"name": "x", "type": "int", "default": 0}]}))
    check(client.get_versions("py-money") == [1, 2], "the subject takes registrations again")


def contexts(url):
    """A serializer and deserializer whose base URL is a context write and read ids of that
    context; the same bytes mean another schema (or none) in the default context."""
    finance = SchemaRegistryClient({"url": url + "/contexts/.finance"})
    plain = SchemaRegistryClient({"url": url})
    amount = {"type": "record", "name": "Amount", "namespace": "t.ctx", "fields": [{"name": "cents", "type": "long"}]}
    ctx = SerializationContext("ctx.amounts", MessageField.VALUE)
    payload = AvroSerializer(finance, json.dumps(amount))({"cents": 7}, ctx)
    writer_id = int.from_bytes(payload[1:5], "big")
    check(writer_id == 1, f"the first schema of context .finance is id 1 ({writer_id})")
    check(AvroDeserializer(SchemaRegistryClient({"url": url + "/contexts/.finance"}))(payload, ctx) == {"cents": 7},
          "a deserializer based in the context reads the record back")
    check(json.loads(plain.get_schema(writer_id).schema_str) != amount, "id 1 of the default context is another schema")
    check(":.finance:ctx.amounts-value" in plain.get_subjects(), "the subject is listed qualified")
    check(finance.get_latest_version("ctx.amounts-value").schema_id == 1, "latest version inside the context")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: registry_client_test.py REGISTRY_URL")
    main(sys.argv[1])
    print("all registry client checks passed")
