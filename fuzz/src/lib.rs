//! What each fuzz target does with its input, shared with `tests/decoder_corpus.rs` (which
//! includes this file with `#[path]`), so a corpus file means the same calls under libFuzzer and
//! under the stable test run.
//!
//! Contract checked: slate's decoders turn any bytes into an error, never a panic, and whatever
//! they accept holds the invariants the enricher relies on (id of 1..=[`MAX_ID_BYTES`] bytes,
//! ts >= 0) and comes back unchanged through a JSON and an Avro re-encode. Each function returns
//! whether the decoder accepted the input.
//!
//! Input layouts:
//! - `decode_json`: `payload [0x00 hint key…]`. A JSON payload never holds a raw NUL, so the
//!   first NUL ends it; the byte after it picks the entity hint (`% 8`: 0..=5 the entities in
//!   [`slate::studio::kind::ALL`] order, 6 and 7 none) and the rest is the Kafka key. No NUL: no hint, no
//!   key, so a plain JSON file is a valid input.
//! - `avro_framing`: the Confluent frame itself. The schema id picks the writer schema (`% 4`,
//!   see [`WRITERS`]), as the registry would.
//! - `cdc`: bytes that choose the parts of a Debezium envelope (op, table, id, lsn, ts, key,
//!   hint, Connect wrapping); the envelope is always valid JSON, so the fuzzer spends its time
//!   in the CDC normalization rather than in the JSON parser. All zeros is a valid create.

use apache_avro::Schema;
use serde_json::{Value, json};
use slate::enrich::avro;
use slate::event::{ChangeEvent, EntityName, MAX_EVENT_BYTES, MAX_ID_BYTES};
use std::sync::LazyLock;

/// Writer schemas a producer may register, selected by `schema_id % 4`.
/// 0: the embedded ChangeEvent. 1: an older writer without the optional fields (reader defaults
/// fill them). 2: fields reordered, `id` as bytes and `version` as int (promotions), `uuid`
/// without its logical type, plus a trailing field the reader skips. 3: a widened writer: an
/// enum symbol and a union branch the reader lacks, `trace` outside a union, and a nested
/// map-of-arrays field the reader must skip block by block.
pub static WRITERS: LazyLock<[Schema; 4]> = LazyLock::new(|| {
    let parse = |text: &str| Schema::parse_str(text).unwrap_or_else(|e| panic!("fuzz writer schema parses: {e}\n{text}"));
    [
        avro::change_event_schema().clone(),
        parse(
            r#"{"type":"record","name":"ChangeEvent","namespace":"studio.finance","fields":[
                {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
                {"name":"type","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE"]}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"entity","type":"string"},{"name":"id","type":"string"}]}"#,
        ),
        parse(
            r#"{"type":"record","name":"ChangeEvent","namespace":"studio.finance","fields":[
                {"name":"id","type":"bytes"},{"name":"entity","type":"string"},
                {"name":"uuid","type":"string"},
                {"name":"type","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE"]}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"version","type":["null","int"],"default":null},
                {"name":"tenant","type":"string","default":""}]}"#,
        ),
        parse(
            r#"{"type":"record","name":"ChangeEvent","namespace":"studio.finance","fields":[
                {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
                {"name":"type","type":{"type":"enum","name":"ChangeType","symbols":["CREATE","UPDATE","DELETE","MERGE"]}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"entity","type":"string"},{"name":"id","type":"string"},
                {"name":"version","type":["null","long"],"default":null},
                {"name":"source","type":["null","string","long"],"default":null},
                {"name":"trace","type":"string","default":""},
                {"name":"extra","type":{"type":"map","values":{"type":"array","items":"bytes"}},"default":{}}]}"#,
        ),
    ]
});

/// The writer schema a frame with this schema id is read with.
pub fn writer(schema_id: u32) -> &'static Schema {
    &WRITERS[schema_id as usize % WRITERS.len()]
}

/// Target `decode_json`: `ChangeEvent::decode_json(payload, key, hint)`.
pub fn decode_json(data: &[u8]) -> bool {
    let (payload, trailer) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let hint = trailer.and_then(|t| t.first()).and_then(|&b| slate::studio::kind::ALL.get(usize::from(b % 8)).copied());
    let key = trailer.map(|t| t.get(1..).unwrap_or_default());
    accepted(ChangeEvent::decode_json(payload, key, hint).ok())
}

/// Target `avro_framing`: `avro::decode`, then `avro::decode_change_event` on the body.
pub fn avro_framing(data: &[u8]) -> bool {
    let Ok((schema_id, body)) = avro::decode(data) else { return false };
    assert_eq!(body.len() + avro::HEADER_LEN, data.len(), "the frame body is everything after the header");
    accepted(avro::decode_change_event(writer(schema_id), body).ok())
}

/// Target `cdc`: a Debezium envelope built from `data` (see the module doc), through
/// `ChangeEvent::decode_json`. A CDC record decodes to the same event every time (its uuid
/// is derived, so replays deduplicate).
pub fn cdc(data: &[u8]) -> bool {
    let (payload, key, hint) = cdc_envelope(data);
    let payload = serde_json::to_vec(&payload).expect("a serde_json Value serializes");
    let first = ChangeEvent::decode_json(&payload, key.as_deref(), hint);
    assert_eq!(first, ChangeEvent::decode_json(&payload, key.as_deref(), hint), "CDC decoding is deterministic");
    accepted(first.ok())
}

/// The (payload, Kafka key, entity hint) the `cdc` target feeds to the decoder.
pub fn cdc_envelope(data: &[u8]) -> (Value, Option<Vec<u8>>, Option<EntityName>) {
    let mut b = Bytes(data);
    let flags = b.byte();
    let op = match b.byte() % 8 {
        0 => json!("c"),
        1 => json!("r"),
        2 => json!("u"),
        3 => json!("d"),
        4 => json!("t"),
        5 => json!(1),
        6 => json!("C"),
        _ => json!(b.text()),
    };
    let table = match b.byte() % 12 {
        0 => json!("productions"),
        1 => json!("talent"),
        2 => json!("schedules"),
        3 => json!("Budget"),
        4 => json!("cash_flows"),
        5 => json!("cash-flow"),
        6 => json!("payments"),
        7 => json!("invoices"),
        8 => json!("s"),
        9 => json!(""),
        10 => json!(null),
        _ => json!(b.text()),
    };
    let id = id_value(&mut b);
    let lsn = number(&mut b);
    let ts = number(&mut b);
    let name = b.text();
    let key = match b.byte() % 6 {
        0 => None,
        1 => Some(b.text().into_bytes()),
        2 => Some(json!({ "id": id_value(&mut b) }).to_string().into_bytes()),
        3 => Some(json!({ "schema": {}, "payload": { "id": id_value(&mut b) } }).to_string().into_bytes()),
        4 => Some(id_value(&mut b).to_string().into_bytes()),
        _ => Some(Vec::new()),
    };
    let hint = slate::studio::kind::ALL.get(usize::from(b.byte() % 8)).copied();

    let mut source = json!({ "name": name });
    if flags & 0x08 == 0 {
        source["table"] = table;
    }
    if flags & 0x20 == 0 {
        source["lsn"] = lsn;
    }
    let mut envelope = json!({ "op": op, "before": null });
    if flags & 0x02 == 0 {
        envelope["after"] = json!({ "id": id.clone(), "title": "x" });
    }
    if flags & 0x04 != 0 {
        envelope["before"] = json!({ "id": id });
    }
    if flags & 0x10 == 0 {
        envelope["ts_ms"] = ts;
    } else {
        source["ts_ms"] = ts;
    }
    envelope["source"] = if flags & 0x40 == 0 { source } else { json!(name) };
    if flags & 0x80 != 0 {
        envelope["transaction"] = json!({ "id": b.text(), "total_order": number(&mut b) });
    }
    if flags & 0x01 != 0 {
        envelope = json!({ "schema": { "type": "struct", "optional": false }, "payload": envelope });
    }
    (envelope, key, hint)
}

/// Checks an accepted event's invariants and re-encodes; returns whether there was one.
fn accepted(event: Option<ChangeEvent>) -> bool {
    let Some(event) = event else { return false };
    assert!(!event.id.is_empty() && event.id.len() <= MAX_ID_BYTES, "accepted id of {} bytes: {event:?}", event.id.len());
    assert!(event.ts >= 0, "accepted negative ts: {event:?}");
    let json = event.to_json();
    if json.len() <= MAX_EVENT_BYTES {
        assert_eq!(
            ChangeEvent::decode_json(&json, None, None).as_ref(),
            Ok(&event),
            "JSON re-encode of {}",
            String::from_utf8_lossy(&json)
        );
    }
    let datum = avro::change_event_datum(&event).unwrap_or_else(|e| panic!("an accepted event encodes as Avro: {e}: {event:?}"));
    if datum.len() <= MAX_EVENT_BYTES {
        let back = avro::decode_change_event(avro::change_event_schema(), &datum);
        assert_eq!(back.as_ref().ok(), Some(&event), "Avro re-encode: {back:?}");
    }
    true
}

/// An `id` as CDC sources write it: mostly strings and integers, sometimes something else.
fn id_value(b: &mut Bytes<'_>) -> Value {
    match b.byte() % 8 {
        0 => json!(format!("id-{}", b.text())),
        1 => json!(b.i64()),
        2 => json!(b.i64() as u64),
        3 => json!(f64::from_bits(b.i64() as u64)),
        4 => json!(null),
        5 => json!(b.byte() & 1 == 1),
        6 => json!({ "id": b.text() }),
        _ => json!("x".repeat(usize::from(b.byte()) * 2)),
    }
}

/// A numeric field (lsn, ts_ms): usually an i64, sometimes a u64, float or string.
fn number(b: &mut Bytes<'_>) -> Value {
    match b.byte() % 5 {
        0 | 1 => json!(b.i64()),
        2 => json!(b.i64() as u64),
        3 => json!(f64::from_bits(b.i64() as u64)),
        _ => json!(b.text()),
    }
}

/// Reads choices off the fuzz input; past its end every read is zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn i64(&mut self) -> i64 {
        let mut raw = [0u8; 8];
        for byte in &mut raw {
            *byte = self.byte();
        }
        i64::from_le_bytes(raw)
    }

    /// A length byte (`% 64`), then that many bytes as (lossy) UTF-8.
    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 64).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }
}
