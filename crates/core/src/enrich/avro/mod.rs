//! Fetched JSON → Avro records in the Confluent wire format, and Avro ChangeEvents → [`ChangeEvent`].
//!
//! The conversion walks the writer schema, never per-entity code, so a field added to a schema
//! (with a default, as BACKWARD_TRANSITIVE evolution requires) needs no change here. Rules:
//! a field absent from the JSON takes its schema default or is an error; JSON keys the schema
//! does not name are ignored; `long`/`int` take JSON integers only; `date` takes `YYYY-MM-DD` or
//! days since 1970-01-01; an unknown enum symbol becomes the enum's declared default or is an
//! error; `null` matches the null branch of a union. Every [`EncodeError`] names the field path
//! (`months[2].amount`) and is permanent: the source sent data the contract does not allow.
//!
//! Wire format (Confluent): byte 0x00, the schema id as 4 big-endian bytes, the Avro datum.
//!
//! Decoding untrusted bytes never panics. apache-avro sizes buffers from lengths read off the
//! wire; [`MAX_AVRO_ALLOCATION_BYTES`] bounds any single allocation so corrupt input fails
//! instead of exhausting memory.

use crate::enrich::fetch::Fetched;
use crate::event::{ChangeEvent, ChangeType, DecodeError, EntityName, MAX_EVENT_BYTES, MAX_ID_BYTES};
use crate::time::parse_date;
use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::{Map, Value as Json, json};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;
use uuid::Uuid;

/// The limit given to `apache_avro::util::max_allocation_bytes`, far above any record slate
/// handles (messages are at most a few MiB). The setting is process-wide and first-set-wins,
/// so call [`limit_allocations`] at start before anything decodes Avro; decoding here calls it
/// too.
pub const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// Applies [`MAX_AVRO_ALLOCATION_BYTES`] unless a limit was already set; returns the limit in force.
pub fn limit_allocations() -> usize {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES)
}

/// Confluent wire-format header: magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// What the enricher knows about the event(s) behind a record; fills `_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub event_uuid: Uuid,
    pub change_type: ChangeType,
    pub event_ts: i64,
    pub fetched_at: i64,
    /// Every uuid folded into this record (coalesced events).
    pub coalesced_uuids: Vec<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the schema is a {0}, not a record")]
    NotARecord(String),
    #[error("missing required field `{path}`")]
    Missing { path: String },
    #[error("`{path}`: expected {expected}, found {found}")]
    WrongType { path: String, expected: &'static str, found: String },
    #[error("`{path}`: {value} is out of range for {ty}")]
    OutOfRange { path: String, value: String, ty: &'static str },
    #[error("`{path}`: {value} is not a date (YYYY-MM-DD or days since 1970-01-01)")]
    BadDate { path: String, value: String },
    #[error("`{path}`: {value} is not a UUID")]
    BadUuid { path: String, value: String },
    #[error("`{path}`: '{symbol}' is not one of {symbols} and the enum declares no default")]
    UnknownSymbol { path: String, symbol: String, symbols: String },
    #[error("`{path}`: no branch of the union accepts {found}")]
    NoUnionBranch { path: String, found: String },
    #[error("`{path}`: Avro type {schema} is not supported")]
    Unsupported { path: String, schema: String },
    #[error("`{path}`: named type {name} is not defined in the schema")]
    UnknownName { path: String, name: String },
    #[error("avro encoding failed: {0}")]
    Avro(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("{0} bytes is shorter than the {HEADER_LEN}-byte Confluent header")]
    TooShort(usize),
    #[error("magic byte is {0:#04x}, expected 0x00 (not Confluent wire format)")]
    BadMagic(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("not an Avro ChangeEvent: {0}")]
    Avro(String),
    #[error("{0} trailing bytes after the ChangeEvent")]
    Trailing(usize),
    #[error("invalid field `{field}`: {message}")]
    InvalidField { field: &'static str, message: String },
    #[error(transparent)]
    Event(#[from] DecodeError),
}

/// The fetched entity as a record of `schema`: `id` and `version` from `fetched`, `_meta`
/// from `meta`, every other field from `fetched.body`.
pub fn to_record(schema: &Schema, fetched: &Fetched, meta: &Meta) -> Result<Value, EncodeError> {
    let Schema::Record(record) = schema else { return Err(EncodeError::NotARecord(type_name(schema))) };
    let Json::Object(body) = &fetched.body else {
        return Err(EncodeError::WrongType { path: "(record)".into(), expected: "an object", found: describe(&fetched.body) });
    };
    let overrides = [("id", Json::from(fetched.id.as_str())), ("version", Json::from(fetched.version)), ("_meta", meta_json(meta))];
    let lookup = |name: &str| overrides.iter().find(|(n, _)| *n == name).map(|(_, v)| v).or_else(|| body.get(name));
    Converter { root: schema, names: OnceCell::new() }.record(record, lookup, Path::Root)
}

/// Confluent framing around the Avro datum of `value` (validated against `schema`).
pub fn encode(schema: &Schema, schema_id: u32, value: Value) -> Result<Vec<u8>, EncodeError> {
    let writer = GenericDatumWriter::builder(schema).build().map_err(|e| EncodeError::Avro(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    writer.write_value(&mut out, value).map_err(|e| EncodeError::Avro(e.to_string()))?;
    Ok(out)
}

/// Splits a Confluent frame into (schema id, Avro datum).
pub fn decode(bytes: &[u8]) -> Result<(u32, &[u8]), FramingError> {
    if bytes.len() < HEADER_LEN {
        return Err(FramingError::TooShort(bytes.len()));
    }
    if bytes[0] != 0 {
        return Err(FramingError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

static CHANGE_EVENT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(crate::schemas::CHANGE_EVENT).expect("the embedded ChangeEvent schema parses (tested)"));

/// `schemas/avro/ChangeEvent.avsc`, parsed once.
pub fn change_event_schema() -> &'static Schema {
    &CHANGE_EVENT_SCHEMA
}

/// Decodes an Avro ChangeEvent datum written with `writer` (the schema its frame's id names),
/// read through the embedded ChangeEvent schema so that writer schemas evolved within
/// BACKWARD_TRANSITIVE rules still decode.
pub fn decode_change_event(writer: &Schema, body: &[u8]) -> Result<ChangeEvent, EventDecodeError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(EventDecodeError::Oversized { len: body.len(), max: MAX_EVENT_BYTES });
    }
    limit_allocations();
    let reader = GenericDatumReader::builder(writer)
        .reader_schema(change_event_schema())
        .build()
        .map_err(|e| EventDecodeError::Avro(format!("writer schema does not resolve to ChangeEvent: {e}")))?;
    let mut rest = body;
    let value = reader.read_value(&mut rest).map_err(|e| EventDecodeError::Avro(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EventDecodeError::Trailing(rest.len()));
    }
    change_event_from_value(value)
}

/// The Avro datum (no framing) of `event` in the embedded ChangeEvent schema.
pub fn change_event_datum(event: &ChangeEvent) -> Result<Vec<u8>, EncodeError> {
    let record = json!({
        "uuid": event.uuid.to_string(), "type": event.change_type.as_str(), "ts": event.ts, "entity": event.entity.as_str(),
        "id": event.id, "version": event.version, "source": event.source, "trace": event.trace,
    });
    let Schema::Record(r) = change_event_schema() else { unreachable!("ChangeEvent is a record") };
    let value = Converter { root: change_event_schema(), names: OnceCell::new() }.record(r, |n| record.get(n), Path::Root)?;
    let writer = GenericDatumWriter::builder(change_event_schema()).build().map_err(|e| EncodeError::Avro(e.to_string()))?;
    writer.write_value_to_vec(value).map_err(|e| EncodeError::Avro(e.to_string()))
}

fn change_event_from_value(value: Value) -> Result<ChangeEvent, EventDecodeError> {
    let Value::Record(fields) = value else { return Err(EventDecodeError::Avro("not a record".into())) };
    let mut fields: HashMap<String, Value> = fields.into_iter().collect();
    let mut take = |field: &'static str| fields.remove(field).ok_or(EventDecodeError::InvalidField { field, message: "is absent".into() });
    let invalid = |field: &'static str, v: &Value| EventDecodeError::InvalidField { field, message: format!("unexpected value {v:?}") };
    let uuid = match take("uuid")? {
        Value::Uuid(u) => u,
        Value::String(s) => Uuid::parse_str(&s).map_err(|e| EventDecodeError::InvalidField { field: "uuid", message: e.to_string() })?,
        other => return Err(invalid("uuid", &other)),
    };
    let change_type = match take("type")? {
        Value::Enum(_, s) if s == "CREATE" => ChangeType::Create,
        Value::Enum(_, s) if s == "UPDATE" => ChangeType::Update,
        Value::Enum(_, s) if s == "DELETE" => ChangeType::Delete,
        other => return Err(invalid("type", &other)),
    };
    let ts = match take("ts")? {
        Value::TimestampMillis(t) | Value::Long(t) => t,
        other => return Err(invalid("ts", &other)),
    };
    let entity: EntityName = match take("entity")? {
        Value::String(s) => s.parse().map_err(|e: crate::catalogue::UnknownEntity| DecodeError::UnknownEntity(e.0))?,
        other => return Err(invalid("entity", &other)),
    };
    let id = match take("id")? {
        Value::String(s) => s,
        other => return Err(invalid("id", &other)),
    };
    let version = match optional(take("version")?) {
        Value::Null => None,
        Value::Long(v) => Some(v),
        other => return Err(invalid("version", &other)),
    };
    let mut text = |field: &'static str| match optional(take(field)?) {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(invalid(field, &other)),
    };
    let (source, trace) = (text("source")?, text("trace")?);
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(EventDecodeError::InvalidField { field: "id", message: format!("is {} bytes; use 1..={MAX_ID_BYTES}", id.len()) });
    }
    if ts < 0 {
        return Err(EventDecodeError::InvalidField { field: "ts", message: format!("{ts} is before 1970") });
    }
    Ok(ChangeEvent { uuid, change_type, ts, entity, id, source, version, trace })
}

fn optional(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn meta_json(meta: &Meta) -> Json {
    json!({
        "event_uuid": meta.event_uuid.to_string(),
        "change_type": meta.change_type.as_str(),
        "event_ts": meta.event_ts,
        "fetched_at": meta.fetched_at,
        "coalesced_uuids": meta.coalesced_uuids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
    })
}

/// A field path, built on the stack and rendered only for error messages.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("(record)"),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct Converter<'s> {
    root: &'s Schema,
    /// Named types, resolved only when the schema references one by name.
    names: OnceCell<Option<HashMap<Name, &'s Schema>>>,
}

impl<'s> Converter<'s> {
    fn record<'j>(&self, r: &'s RecordSchema, lookup: impl Fn(&str) -> Option<&'j Json>, path: Path<'_>) -> Result<Value, EncodeError> {
        let mut out = Vec::with_capacity(r.fields.len());
        for field in &r.fields {
            let field_path = Path::Field(&path, &field.name);
            let value = match (lookup(&field.name), &field.default) {
                (Some(v), _) => self.value(&field.schema, v, field_path)?,
                (None, Some(default)) => self.value(&field.schema, default, field_path)?,
                (None, None) => return Err(EncodeError::Missing { path: field_path.to_string() }),
            };
            out.push((field.name.clone(), value));
        }
        Ok(Value::Record(out))
    }

    fn value(&self, schema: &'s Schema, json: &Json, path: Path<'_>) -> Result<Value, EncodeError> {
        let wrong = |expected: &'static str| EncodeError::WrongType { path: path.to_string(), expected, found: describe(json) };
        Ok(match schema {
            Schema::Null => json.is_null().then_some(Value::Null).ok_or_else(|| wrong("null"))?,
            Schema::Boolean => Value::Boolean(json.as_bool().ok_or_else(|| wrong("a boolean"))?),
            Schema::Int => Value::Int(int32(json, path)?),
            Schema::Long => Value::Long(int64(json, path)?),
            Schema::Float => Value::Float(json.as_f64().ok_or_else(|| wrong("a number"))? as f32),
            Schema::Double => Value::Double(json.as_f64().ok_or_else(|| wrong("a number"))?),
            Schema::String => Value::String(json.as_str().ok_or_else(|| wrong("a string"))?.to_string()),
            Schema::Date => Value::Date(date(json, path)?),
            Schema::TimeMillis => Value::TimeMillis(int32(json, path)?),
            Schema::TimeMicros => Value::TimeMicros(int64(json, path)?),
            Schema::TimestampMillis => Value::TimestampMillis(int64(json, path)?),
            Schema::TimestampMicros => Value::TimestampMicros(int64(json, path)?),
            Schema::TimestampNanos => Value::TimestampNanos(int64(json, path)?),
            Schema::LocalTimestampMillis => Value::LocalTimestampMillis(int64(json, path)?),
            Schema::LocalTimestampMicros => Value::LocalTimestampMicros(int64(json, path)?),
            Schema::LocalTimestampNanos => Value::LocalTimestampNanos(int64(json, path)?),
            Schema::Uuid(_) => {
                let s = json.as_str().ok_or_else(|| wrong("a UUID string"))?;
                Value::Uuid(Uuid::parse_str(s).map_err(|_| EncodeError::BadUuid { path: path.to_string(), value: format!("'{s}'") })?)
            }
            Schema::Enum(e) => {
                let symbol = json.as_str().ok_or_else(|| wrong("an enum symbol"))?;
                let chosen = if e.symbols.iter().any(|s| s == symbol) { Some(symbol) } else { e.default.as_deref() };
                let Some((index, symbol)) = chosen.and_then(|c| e.symbols.iter().enumerate().find(|(_, s)| *s == c)) else {
                    return Err(EncodeError::UnknownSymbol {
                        path: path.to_string(),
                        symbol: symbol.into(),
                        symbols: e.symbols.join(", "),
                    });
                };
                Value::Enum(index as u32, symbol.clone())
            }
            Schema::Array(a) => {
                let items = json.as_array().ok_or_else(|| wrong("a list"))?;
                Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.value(&a.items, item, Path::Index(&path, i)))
                        .collect::<Result<_, _>>()?,
                )
            }
            Schema::Map(m) => {
                let entries = json.as_object().ok_or_else(|| wrong("an object"))?;
                Value::Map(
                    entries
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), self.value(&m.types, v, Path::Field(&path, k))?)))
                        .collect::<Result<_, _>>()?,
                )
            }
            Schema::Record(r) => {
                let object: &Map<String, Json> = json.as_object().ok_or_else(|| wrong("an object"))?;
                self.record(r, |name| object.get(name), path)?
            }
            Schema::Union(u) => self.union(u.variants(), json, path)?,
            Schema::Ref { name } => {
                let names = self.names.get_or_init(|| ResolvedSchema::try_from(self.root).ok().map(|r| r.get_names().clone()));
                let target = names.as_ref().and_then(|n| n.get(name).copied());
                let target = target.ok_or_else(|| EncodeError::UnknownName { path: path.to_string(), name: name.fullname(None) })?;
                self.value(target, json, path)?
            }
            other => return Err(EncodeError::Unsupported { path: path.to_string(), schema: type_name(other) }),
        })
    }

    /// `null` takes the null branch; anything else the only non-null branch (its error is
    /// the precise one) or, with several, the first branch that accepts it.
    fn union(&self, variants: &'s [Schema], json: &Json, path: Path<'_>) -> Result<Value, EncodeError> {
        let no_branch = || EncodeError::NoUnionBranch { path: path.to_string(), found: describe(json) };
        if json.is_null() {
            let index = variants.iter().position(|v| matches!(v, Schema::Null)).ok_or_else(no_branch)?;
            return Ok(Value::Union(index as u32, Box::new(Value::Null)));
        }
        let candidates: Vec<(usize, &Schema)> = variants.iter().enumerate().filter(|(_, v)| !matches!(v, Schema::Null)).collect();
        if let [(index, only)] = candidates[..] {
            return Ok(Value::Union(index as u32, Box::new(self.value(only, json, path)?)));
        }
        candidates
            .into_iter()
            .find_map(|(index, v)| self.value(v, json, path).ok().map(|value| Value::Union(index as u32, Box::new(value))))
            .ok_or_else(no_branch)
    }
}

fn int64(json: &Json, path: Path<'_>) -> Result<i64, EncodeError> {
    match json {
        Json::Number(n) if n.is_i64() => Ok(n.as_i64().expect("is_i64")),
        Json::Number(n) if n.is_u64() => Err(EncodeError::OutOfRange { path: path.to_string(), value: n.to_string(), ty: "long" }),
        other => Err(EncodeError::WrongType { path: path.to_string(), expected: "an integer", found: describe(other) }),
    }
}

fn int32(json: &Json, path: Path<'_>) -> Result<i32, EncodeError> {
    let wide = int64(json, path).map_err(|e| match e {
        EncodeError::OutOfRange { path, value, .. } => EncodeError::OutOfRange { path, value, ty: "int" },
        other => other,
    })?;
    i32::try_from(wide).map_err(|_| EncodeError::OutOfRange { path: path.to_string(), value: wide.to_string(), ty: "int" })
}

fn date(json: &Json, path: Path<'_>) -> Result<i32, EncodeError> {
    match json {
        Json::String(s) => parse_date(s).ok_or_else(|| EncodeError::BadDate { path: path.to_string(), value: format!("'{s}'") }),
        Json::Number(_) => int32(json, path),
        other => Err(EncodeError::BadDate { path: path.to_string(), value: describe(other) }),
    }
}

fn describe(json: &Json) -> String {
    let text = json.to_string();
    if text.len() > 60 { format!("{}…", &text[..text.floor_char_boundary(60)]) } else { text }
}

fn type_name(schema: &Schema) -> String {
    let text = format!("{schema:?}");
    text.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}

#[cfg(test)]
mod tests;
