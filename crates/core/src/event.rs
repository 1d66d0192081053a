//! Change events: the ID-only notifications slate consumes, and CDC envelopes normalized into them.
//!
//! Contract: an event says *that* an entity changed, never *what* it became; the enricher fetches
//! the current state. Decoding never panics on arbitrary bytes: every failure is a [`DecodeError`]
//! whose message is the reason written to the dead-letter headers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::catalogue::EntityName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeType {
    Create,
    Update,
    Delete,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// The ID-only change event (`schemas/avro/ChangeEvent.avsc`; JSON uses the same field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEvent {
    pub uuid: Uuid,
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts: i64,
    pub entity: EntityName,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Largest event payload accepted; anything bigger is dead-lettered, not parsed.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Largest entity id accepted (ids become Kafka keys and SQL primary keys).
pub const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("empty payload")]
    Empty,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("invalid field `{field}`: {message}")]
    InvalidField { field: &'static str, message: String },
    #[error("unknown entity '{0}': not in the catalogue (declare it under [catalogue.entities.<name>])")]
    UnknownEntity(String),
    #[error("unsupported CDC operation '{0}'; expected c, r, u or d")]
    UnsupportedOp(String),
}

impl ChangeEvent {
    pub fn new(change_type: ChangeType, entity: EntityName, id: impl Into<String>, ts: i64) -> Self {
        Self { uuid: Uuid::new_v4(), change_type, ts, entity, id: id.into(), source: None, version: None, trace: None }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("change event serializes")
    }

    /// Decodes a JSON payload that is either a ChangeEvent or a Debezium-style CDC envelope.
    /// `key` is the Kafka key (CDC ids may live only there); `entity_hint` names the entity when
    /// the topic says it (a CDC table name is used otherwise).
    pub fn decode_json(payload: &[u8], key: Option<&[u8]>, entity_hint: Option<EntityName>) -> Result<Self, DecodeError> {
        if payload.len() > MAX_EVENT_BYTES {
            return Err(DecodeError::Oversized { len: payload.len(), max: MAX_EVENT_BYTES });
        }
        if payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        let value: Value = serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
        let value = unwrap_connect_payload(value);
        let event = if is_cdc_envelope(&value) {
            from_cdc(&value, key, entity_hint)?
        } else {
            serde_json::from_value::<ChangeEvent>(value).map_err(|e| DecodeError::Json(e.to_string()))?
        };
        event.check()
    }

    fn check(self) -> Result<Self, DecodeError> {
        if self.id.is_empty() {
            return Err(DecodeError::InvalidField { field: "id", message: "is empty".into() });
        }
        if self.id.len() > MAX_ID_BYTES {
            return Err(DecodeError::InvalidField { field: "id", message: format!("is {} bytes, limit {MAX_ID_BYTES}", self.id.len()) });
        }
        if self.ts < 0 {
            return Err(DecodeError::InvalidField { field: "ts", message: format!("{} is before 1970", self.ts) });
        }
        Ok(self)
    }
}

/// Kafka Connect's JsonConverter with schemas enabled wraps records as `{"schema":…, "payload":…}`.
fn unwrap_connect_payload(value: Value) -> Value {
    match value {
        Value::Object(mut map) if map.contains_key("schema") && map.contains_key("payload") => map.remove("payload").unwrap_or(Value::Null),
        other => other,
    }
}

fn is_cdc_envelope(value: &Value) -> bool {
    value.get("op").is_some() && (value.get("after").is_some() || value.get("before").is_some())
}

/// Normalizes a Debezium-style envelope (`before`, `after`, `op`, `source.lsn`, `ts_ms`).
///
/// The uuid is derived from (entity, id, op, lsn) so that a replayed CDC record deduplicates
/// like a redelivered event; the version is `source.lsn`.
fn from_cdc(value: &Value, key: Option<&[u8]>, entity_hint: Option<EntityName>) -> Result<ChangeEvent, DecodeError> {
    let op = value.get("op").and_then(Value::as_str).ok_or(DecodeError::InvalidField { field: "op", message: "is not a string".into() })?;
    let change_type = match op {
        "c" | "r" => ChangeType::Create,
        "u" => ChangeType::Update,
        "d" => ChangeType::Delete,
        other => return Err(DecodeError::UnsupportedOp(other.to_string())),
    };
    let source = value.get("source");
    let entity = match entity_hint {
        Some(e) => e,
        None => {
            let table = source.and_then(|s| s.get("table")).and_then(Value::as_str).ok_or(DecodeError::MissingField("source.table"))?;
            table.parse().map_err(|e: crate::catalogue::UnknownEntity| DecodeError::UnknownEntity(e.0))?
        }
    };
    let id = id_from_key(key)
        .or_else(|| value.get("after").and_then(|a| a.get("id")).and_then(id_string))
        .or_else(|| value.get("before").and_then(|b| b.get("id")).and_then(id_string))
        .ok_or(DecodeError::MissingField("id (in the key, after.id or before.id)"))?;
    let lsn = source.and_then(|s| s.get("lsn")).and_then(Value::as_i64);
    let ts = value
        .get("ts_ms")
        .and_then(Value::as_i64)
        .or_else(|| source.and_then(|s| s.get("ts_ms")).and_then(Value::as_i64))
        .ok_or(DecodeError::MissingField("ts_ms"))?;
    let connector = source.and_then(|s| s.get("name").or_else(|| s.get("connector"))).and_then(Value::as_str).map(str::to_string);
    let identity = format!("{entity}/{id}/{op}/{}/{ts}", lsn.map(|l| l.to_string()).unwrap_or_default());
    Ok(ChangeEvent {
        uuid: Uuid::new_v5(&Uuid::NAMESPACE_OID, identity.as_bytes()),
        change_type,
        ts,
        entity,
        id,
        source: connector,
        version: lsn,
        trace: None,
    })
}

fn id_from_key(key: Option<&[u8]>) -> Option<String> {
    let key = key.filter(|k| !k.is_empty())?;
    match serde_json::from_slice::<Value>(key) {
        Ok(v) => {
            let v = unwrap_connect_payload(v);
            match &v {
                Value::Object(_) => v.get("id").and_then(id_string),
                other => id_string(other),
            }
        }
        Err(_) => std::str::from_utf8(key).ok().map(str::to_string),
    }
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_event_round_trips_as_json() {
        let mut e = ChangeEvent::new(ChangeType::Update, crate::catalogue::example::CASH_FLOW, "cf-1", 1_700_000_000_000);
        e.trace = Some("00-abc-def-01".into());
        let bytes = e.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"type\":\"UPDATE\"") && text.contains("\"entity\":\"cash_flow\""), "{text}");
        assert_eq!(ChangeEvent::decode_json(&bytes, None, None).unwrap(), e);
    }

    #[test]
    fn entity_names_parse_in_all_spellings() {
        for s in ["cash_flow", "cash_flows", "CashFlow", "cashflow", "cash-flow"] {
            assert_eq!(s.parse::<EntityName>().unwrap(), crate::catalogue::example::CASH_FLOW, "{s}");
        }
        assert_eq!("productions".parse::<EntityName>().unwrap(), crate::catalogue::example::PRODUCTION);
        assert!("invoice_never_declared".parse::<EntityName>().is_err());
    }

    #[test]
    fn debezium_envelope_normalizes() {
        let env = br#"{"before":null,"after":{"id":"p-7","title":"X"},"op":"c","source":{"lsn":4242,"table":"productions","name":"pg"},"ts_ms":1700000000123}"#;
        let e = ChangeEvent::decode_json(env, None, None).unwrap();
        assert_eq!(
            (e.change_type, e.entity, e.id.as_str(), e.version, e.ts),
            (ChangeType::Create, crate::catalogue::example::PRODUCTION, "p-7", Some(4242), 1700000000123)
        );
        assert_eq!(e.source.as_deref(), Some("pg"));
        // Replaying the same CDC record yields the same uuid (so dedup sees a duplicate).
        assert_eq!(ChangeEvent::decode_json(env, None, None).unwrap().uuid, e.uuid);
    }

    #[test]
    fn debezium_delete_takes_id_from_key_or_before() {
        let env = br#"{"schema":{},"payload":{"before":{"id":9},"after":null,"op":"d","source":{"lsn":5},"ts_ms":1}}"#;
        let e =
            ChangeEvent::decode_json(env, Some(br#"{"schema":{},"payload":{"id":12}}"#), Some(crate::catalogue::example::PAYMENT)).unwrap();
        assert_eq!((e.change_type, e.id.as_str()), (ChangeType::Delete, "12"));
        let e = ChangeEvent::decode_json(env, None, Some(crate::catalogue::example::PAYMENT)).unwrap();
        assert_eq!(e.id, "9");
        let e = ChangeEvent::decode_json(env, Some(b"raw-key"), Some(crate::catalogue::example::PAYMENT)).unwrap();
        assert_eq!(e.id, "raw-key");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        type Case<'a> = (&'a [u8], fn(&DecodeError) -> bool);
        let cases: &[Case] = &[
            (b"", |e| matches!(e, DecodeError::Empty)),
            (b"\xff\x00garbage", |e| matches!(e, DecodeError::Json(_))),
            (br#"{"op":"t","before":null,"after":null,"ts_ms":1}"#, |e| matches!(e, DecodeError::UnsupportedOp(_))),
            (br#"{"op":"c","after":{"id":"1"},"ts_ms":1}"#, |e| matches!(e, DecodeError::MissingField("source.table"))),
            (br#"{"op":"c","after":{"x":1},"source":{"table":"budgets"},"ts_ms":1}"#, |e| matches!(e, DecodeError::MissingField(_))),
            (br#"{"uuid":"8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11","type":"UPDATE","ts":1,"entity":"invoice","id":"1"}"#, |e| {
                matches!(e, DecodeError::Json(_))
            }),
            (br#"{"uuid":"8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11","type":"UPDATE","ts":1,"entity":"budget","id":""}"#, |e| {
                matches!(e, DecodeError::InvalidField { field: "id", .. })
            }),
            (br#"{"uuid":"8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11","type":"MERGE","ts":1,"entity":"budget","id":"1"}"#, |e| {
                matches!(e, DecodeError::Json(_))
            }),
        ];
        for (input, check) in cases {
            let err = ChangeEvent::decode_json(input, None, None).expect_err("must be rejected");
            assert!(check(&err), "{:?} gave {err:?}", String::from_utf8_lossy(input));
        }
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(ChangeEvent::decode_json(&big, None, None), Err(DecodeError::Oversized { .. })));
    }
}
