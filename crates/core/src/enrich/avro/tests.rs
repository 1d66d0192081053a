//! Unit tests of the JSON → Avro conversion, the framing and ChangeEvent decoding.

use super::*;
use crate::catalogue::Catalogue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn schema(kind: EntityName) -> Schema {
    Catalogue::example(kind).schema.clone()
}

fn meta() -> Meta {
    Meta {
        event_uuid: Uuid::from_u128(7),
        change_type: ChangeType::Update,
        event_ts: 1_700_000_000_000,
        fetched_at: 1_700_000_000_050,
        coalesced_uuids: vec![Uuid::from_u128(6), Uuid::from_u128(7)],
    }
}

fn fetched(body: Json) -> Fetched {
    Fetched { id: body["id"].as_str().unwrap().into(), version: body["version"].as_i64().unwrap(), body }
}

/// JSON → record → framed bytes → decoded with the writer schema gives the same record.
fn round_trip(schema: &Schema, f: &Fetched) -> Value {
    let record = to_record(schema, f, &meta()).unwrap_or_else(|e| panic!("{}: {e}", f.id));
    let bytes = encode(schema, 42, record.clone()).unwrap();
    let (id, mut body) = decode(&bytes).unwrap();
    let back = GenericDatumReader::builder(schema).build().unwrap().read_value(&mut body).unwrap();
    assert_eq!((id, &back, body.len()), (42, &record, 0));
    record
}

fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
    &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1
}

/// One entity of each kind, shaped as the studio's GraphQL API returns them.
fn studio_json() -> Vec<(EntityName, Json)> {
    vec![
        (
            crate::catalogue::example::PRODUCTION,
            json!({ "id": "prod-000001", "version": 3, "title": "Night Ledger", "status": "PRE_PRODUCTION", "genre": "thriller",
                    "currency": "USD", "budget_id": "bud-000001", "schedule_id": null }),
        ),
        (
            crate::catalogue::example::TALENT,
            json!({ "id": "tal-000001", "version": 2, "name": "Ada Quist", "role": "DIRECTOR",
                    "deals": [{ "production_id": "prod-000001", "fee": 25_000_000, "currency": "USD" }] }),
        ),
        (
            crate::catalogue::example::SCHEDULE,
            json!({ "id": "sch-000001", "version": 1, "production_id": "prod-000001", "start_date": "2027-01-15", "launch_date": "2028-06-01" }),
        ),
        (
            crate::catalogue::example::BUDGET,
            json!({ "id": "bud-000001", "version": 4, "production_id": "prod-000001", "currency": "USD", "total": 1_500,
                    "lines": [{ "category": "PRODUCTION", "amount": 1_000 }, { "category": "MARKETING", "amount": 500 }] }),
        ),
        (
            crate::catalogue::example::CASH_FLOW,
            json!({ "id": "cf-000001", "version": 5, "production_id": "prod-000001", "currency": "USD", "total": 9_000_000_000_i64,
                    "months": [{ "month": "2027-01", "amount": 4_000_000_000_i64 }, { "month": "2027-02", "amount": 5_000_000_000_i64 }] }),
        ),
        (
            crate::catalogue::example::PAYMENT,
            json!({ "id": "pay-000001", "version": 1, "production_id": "prod-000001", "talent_id": "tal-000001", "amount": 12_345,
                    "currency": "USD", "status": "PAID", "due_date": "2027-03-31" }),
        ),
    ]
}

#[test]
fn every_entity_round_trips() {
    for (kind, body) in studio_json() {
        let record = round_trip(&schema(kind), &fetched(body));
        assert_eq!(field(&record, "id"), &Value::String(fetched(studio_json_of(kind)).id));
        let meta = field(&record, "_meta");
        assert_eq!(field(meta, "event_uuid"), &Value::Uuid(Uuid::from_u128(7)));
        assert_eq!(field(meta, "change_type"), &Value::Enum(1, "UPDATE".into()));
        assert_eq!(field(meta, "fetched_at"), &Value::TimestampMillis(1_700_000_000_050));
    }
    let production =
        round_trip(&schema(crate::catalogue::example::PRODUCTION), &fetched(studio_json_of(crate::catalogue::example::PRODUCTION)));
    assert_eq!(field(&production, "schedule_id"), &Value::Union(0, Box::new(Value::Null)));
    assert_eq!(field(&production, "budget_id"), &Value::Union(1, Box::new(Value::String("bud-000001".into()))));
}

fn studio_json_of(kind: EntityName) -> Json {
    studio_json().into_iter().find(|(k, _)| *k == kind).unwrap().1
}

#[test]
fn id_and_version_come_from_the_fetch() {
    let mut f = fetched(studio_json_of(crate::catalogue::example::PAYMENT));
    f.body.as_object_mut().unwrap().retain(|k, _| k != "id" && k != "version");
    f.version = 99;
    assert_eq!(field(&round_trip(&schema(crate::catalogue::example::PAYMENT), &f), "version"), &Value::Long(99));
}

#[test]
fn dates_from_strings_or_days() {
    let s = schema(crate::catalogue::example::SCHEDULE);
    let mut f = fetched(studio_json_of(crate::catalogue::example::SCHEDULE));
    let from_string = round_trip(&s, &f);
    f.body["start_date"] = json!(parse_date("2027-01-15").unwrap());
    assert_eq!(round_trip(&s, &f), from_string);
    assert_eq!(field(&from_string, "launch_date"), &Value::Date(parse_date("2028-06-01").unwrap()));
    for bad in [json!("2027-02-30"), json!("15/01/2027"), json!(1.5), json!(1_i64 << 40), json!(null)] {
        f.body["start_date"] = bad.clone();
        let err = to_record(&s, &f, &meta()).unwrap_err();
        assert!(err.to_string().starts_with("`start_date`"), "{bad}: {err}");
    }
}

#[test]
fn missing_fields_take_defaults_or_name_the_path() {
    let mut f = fetched(studio_json_of(crate::catalogue::example::TALENT));
    f.body.as_object_mut().unwrap().remove("deals");
    assert_eq!(field(&round_trip(&schema(crate::catalogue::example::TALENT), &f), "deals"), &Value::Array(vec![]));
    let mut f = fetched(studio_json_of(crate::catalogue::example::CASH_FLOW));
    f.body["months"][1].as_object_mut().unwrap().remove("amount");
    let err = to_record(&schema(crate::catalogue::example::CASH_FLOW), &f, &meta()).unwrap_err();
    assert!(matches!(&err, EncodeError::Missing { path } if path == "months[1].amount"), "{err}");
    assert_eq!(err.to_string(), "missing required field `months[1].amount`");
}

#[test]
fn wrong_types_name_the_path() {
    let mut f = fetched(studio_json_of(crate::catalogue::example::BUDGET));
    f.body["lines"][0]["amount"] = json!(10.5);
    let err = to_record(&schema(crate::catalogue::example::BUDGET), &f, &meta()).unwrap_err();
    assert_eq!(err.to_string(), "`lines[0].amount`: expected an integer, found 10.5");
    f.body["lines"][0]["amount"] = json!(u64::MAX);
    assert!(matches!(to_record(&schema(crate::catalogue::example::BUDGET), &f, &meta()), Err(EncodeError::OutOfRange { .. })));
    let mut f = fetched(studio_json_of(crate::catalogue::example::PRODUCTION));
    f.body["budget_id"] = json!(5);
    assert!(
        to_record(&schema(crate::catalogue::example::PRODUCTION), &f, &meta())
            .unwrap_err()
            .to_string()
            .starts_with("`budget_id`: expected a string")
    );
}

#[test]
fn unknown_enum_symbols_fall_back_to_the_default() {
    let mut f = fetched(studio_json_of(crate::catalogue::example::PAYMENT));
    f.body["status"] = json!("REFUNDED");
    assert_eq!(field(&round_trip(&schema(crate::catalogue::example::PAYMENT), &f), "status"), &Value::Enum(0, "PENDING".into()));
    let no_default = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"},{"name":"version","type":"long"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}]}"#,
    )
    .unwrap();
    let err = to_record(&no_default, &Fetched { id: "x".into(), version: 1, body: json!({ "e": "C" }) }, &meta()).unwrap_err();
    assert_eq!(err.to_string(), "`e`: 'C' is not one of A, B and the enum declares no default");
}

#[test]
fn named_references_resolve() {
    let s = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"},{"name":"version","type":"long"},
            {"name":"a","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}},{"name":"b","type":["null","P"]}]}"#,
    )
    .unwrap();
    let record = round_trip(&s, &Fetched { id: "x".into(), version: 1, body: json!({ "a": { "x": 1 }, "b": { "x": 2 } }) });
    assert_eq!(field(&record, "b"), &Value::Union(1, Box::new(Value::Record(vec![("x".into(), Value::Int(2))]))));
}

#[test]
fn framing() {
    assert_eq!(decode(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, &[9u8, 9][..]));
    assert_eq!(decode(&[0, 0, 0, 0, 1]).unwrap(), (1, &[][..]));
    for short in [&[][..], &[0], &[0, 0, 0, 1]] {
        assert_eq!(decode(short), Err(FramingError::TooShort(short.len())));
    }
    assert_eq!(decode(&[1, 0, 0, 0, 1, 2]), Err(FramingError::BadMagic(1)));
    let bytes = encode(&Schema::Long, 0xDEAD_BEEF, Value::Long(1)).unwrap();
    assert_eq!(bytes, [0, 0xDE, 0xAD, 0xBE, 0xEF, 2]);
    assert!(matches!(encode(&Schema::Long, 1, Value::String("x".into())), Err(EncodeError::Avro(_))));
}

#[test]
fn change_events_round_trip_and_evolve() {
    let mut e = ChangeEvent::new(ChangeType::Delete, crate::catalogue::example::CASH_FLOW, "cf-000001", 1_700_000_000_000);
    let bytes = change_event_datum(&e).unwrap();
    assert_eq!(decode_change_event(change_event_schema(), &bytes).unwrap(), e);
    (e.version, e.source, e.trace) = (Some(12), Some("studio".into()), Some("00-abc-def-01".into()));
    assert_eq!(decode_change_event(change_event_schema(), &change_event_datum(&e).unwrap()).unwrap(), e);
    // An older writer without the optional fields still decodes (reader defaults fill them).
    let old = Schema::parse_str(
        r#"{"type":"record","name":"ChangeEvent","namespace":"studio.finance","fields":[
            {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
            {"name":"type","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE"]}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"entity","type":"string"},{"name":"id","type":"string"}]}"#,
    )
    .unwrap();
    let record = Value::Record(vec![
        ("uuid".into(), Value::Uuid(e.uuid)),
        ("type".into(), Value::Enum(2, "DELETE".into())),
        ("ts".into(), Value::TimestampMillis(e.ts)),
        ("entity".into(), Value::String("cash_flows".into())),
        ("id".into(), Value::String("cf-1".into())),
    ]);
    let body = GenericDatumWriter::builder(&old).build().unwrap().write_value_to_vec(record).unwrap();
    let decoded = decode_change_event(&old, &body).unwrap();
    assert_eq!(
        (decoded.entity, decoded.id.as_str(), decoded.version, decoded.source),
        (crate::catalogue::example::CASH_FLOW, "cf-1", None, None)
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(decode_change_event(change_event_schema(), &trailing), Err(EventDecodeError::Trailing(1))));
    let unrelated = schema(crate::catalogue::example::PAYMENT);
    assert!(matches!(decode_change_event(&unrelated, &bytes), Err(EventDecodeError::Avro(_))));
}

#[test]
fn garbage_never_panics() {
    let mut rng = SmallRng::seed_from_u64(11);
    let valid = change_event_datum(&ChangeEvent::new(ChangeType::Create, crate::catalogue::example::TALENT, "tal-1", 5)).unwrap();
    let writers = [change_event_schema().clone(), schema(crate::catalogue::example::CASH_FLOW)];
    for round in 0..4000 {
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        } else {
            let mut b = valid.clone();
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
            b.truncate(rng.random_range(0..=b.len()));
            b
        };
        if round % 7 == 0 {
            bytes.splice(0..0, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
        let _ = decode(&bytes);
        let _ = decode_change_event(&writers[round % 2], &bytes);
    }
    // The allocation limit is process-wide and first-set-wins, so which value is in force here
    // depends on test order; the binary sets it first thing in `main`.
    let huge = vec![0u8; MAX_EVENT_BYTES + 1];
    assert!(matches!(decode_change_event(change_event_schema(), &huge), Err(EventDecodeError::Oversized { .. })));
}
