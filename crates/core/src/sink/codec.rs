//! One decoder per (writer schema id, entity), built once and reused for every record.
//!
//! A record is read with Avro schema resolution against the embedded reader schema, so an
//! older writer still yields every field the sinks expect (reader defaults fill the gaps). A
//! newer writer may carry fields this build does not know: resolution would drop them, so such
//! a writer also gets a plain writer-schema reader and its extra fields are merged into the
//! resolved value. Nothing a writer wrote is lost on the way to the search and audit sinks.
//!
//! Schemas handed to the readers live for the process (`Box::leak`): one per distinct writer
//! schema id actually fetched from the registry, a bounded set.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use serde_json::{Map, Value as Json, json};
use std::collections::{HashMap, HashSet};

pub struct Codec {
    writer: &'static Schema,
    resolved: GenericDatumReader<'static>,
    /// Present when the writer has fields the reader lacks.
    raw: Option<GenericDatumReader<'static>>,
}

impl Codec {
    /// The readers borrow their schemas for as long as they live, so both are leaked: once per
    /// codec, and codecs are cached per (schema id, entity), a set bounded by the registry.
    pub fn new(writer: Schema, reader: &Schema) -> Result<Self, String> {
        let writer: &'static Schema = Box::leak(Box::new(writer));
        let reader: &'static Schema = Box::leak(Box::new(reader.clone()));
        let resolved = GenericDatumReader::builder(writer).reader_schema(reader).build().map_err(|e| e.to_string())?;
        let raw = if has_fields_unknown_to(writer, reader) {
            Some(GenericDatumReader::builder(writer).build().map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Self { writer, resolved, raw })
    }

    /// The writer schema.
    pub fn writer(&self) -> &'static Schema {
        self.writer
    }

    /// Whether records of this writer carry fields the reader schema does not know.
    #[cfg(test)]
    fn keeps_extra_fields(&self) -> bool {
        self.raw.is_some()
    }

    /// Decodes one Avro body (without the wire-format header) into the sinks' JSON.
    pub fn decode(&self, body: &[u8]) -> Result<Json, String> {
        let mut json = to_json(self.resolved.read_value(&mut &body[..]).map_err(|e| e.to_string())?);
        if let Some(raw) = &self.raw {
            let written = to_json(raw.read_value(&mut &body[..]).map_err(|e| e.to_string())?);
            merge_missing(&mut json, written);
        }
        Ok(json)
    }
}

/// Avro value → JSON, the shape every sink stores.
pub fn to_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Long(l)
        | Value::TimestampMillis(l)
        | Value::TimestampMicros(l)
        | Value::LocalTimestampMillis(l)
        | Value::LocalTimestampMicros(l) => json!(l),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::String(s) | Value::Enum(_, s) => json!(s),
        Value::Uuid(u) => json!(u.to_string()),
        Value::Date(d) => json!(crate::time::format_date(d)),
        Value::Union(_, inner) => to_json(*inner),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Value::Record(fields) => Json::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect::<Map<_, _>>()),
        Value::Bytes(b) | Value::Fixed(_, b) => Json::Array(b.into_iter().map(|x| json!(x)).collect()),
        other => json!(format!("{other:?}")),
    }
}

/// Adds to `base` whatever `wider` has that `base` lacks, recursively (objects by key, arrays
/// element by element).
fn merge_missing(base: &mut Json, wider: Json) {
    match (base, wider) {
        (Json::Object(b), Json::Object(w)) => {
            for (k, v) in w {
                match b.get_mut(&k) {
                    Some(existing) => merge_missing(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Json::Array(b), Json::Array(w)) if b.len() == w.len() => {
            for (existing, v) in b.iter_mut().zip(w) {
                merge_missing(existing, v);
            }
        }
        _ => {}
    }
}

/// Field names (and aliases) of every named record in `schema`, by full name.
fn record_fields(schema: &Schema, out: &mut HashMap<String, HashSet<String>>) {
    match schema {
        Schema::Record(r) => {
            let name = r.name.fullname(None);
            if out.contains_key(&name) {
                return;
            }
            let names = r.fields.iter().flat_map(|f| std::iter::once(f.name.clone()).chain(f.aliases.clone()));
            out.insert(name, names.collect());
            for f in &r.fields {
                record_fields(&f.schema, out);
            }
        }
        Schema::Array(a) => record_fields(&a.items, out),
        Schema::Map(m) => record_fields(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| record_fields(v, out)),
        _ => {}
    }
}

/// True when some record of `writer` has a field its namesake in `reader` lacks, or when the
/// top-level records' names differ (a rename: merge, to be safe).
fn has_fields_unknown_to(writer: &Schema, reader: &Schema) -> bool {
    let (mut w, mut r) = (HashMap::new(), HashMap::new());
    record_fields(writer, &mut w);
    record_fields(reader, &mut r);
    let top = |s: &Schema| if let Schema::Record(rec) = s { Some(rec.name.fullname(None)) } else { None };
    if top(writer) != top(reader) {
        return true;
    }
    w.iter().any(|(name, fields)| r.get(name).is_some_and(|known| fields.iter().any(|f| !known.contains(f))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"P","namespace":"t","fields":[{"name":"id","type":"string"},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"a","type":"long"}]}}}]}"#;
    const V2: &str = r#"{"type":"record","name":"P","namespace":"t","fields":[{"name":"id","type":"string"},
        {"name":"rating","type":["null","string"],"default":null},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"a","type":"long"},
        {"name":"note","type":"string","default":""}]}}}]}"#;

    fn body(schema: &Schema, v: Value) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().unwrap().write_value_to_vec(v).unwrap()
    }

    fn v2_record() -> Value {
        let line = Value::Record(vec![("a".into(), Value::Long(7)), ("note".into(), Value::String("rush".into()))]);
        Value::Record(vec![
            ("id".into(), Value::String("p1".into())),
            ("rating".into(), Value::Union(1, Box::new(Value::String("PG".into())))),
            ("lines".into(), Value::Array(vec![line])),
        ])
    }

    #[test]
    fn a_newer_writer_keeps_every_field_it_wrote() {
        let (v1, v2) = (Schema::parse_str(V1).unwrap(), Schema::parse_str(V2).unwrap());
        let reader: &'static Schema = Box::leak(Box::new(v1));
        let codec = Codec::new(v2.clone(), reader).unwrap();
        assert!(codec.keeps_extra_fields());
        let json = codec.decode(&body(&v2, v2_record())).unwrap();
        assert_eq!(json, serde_json::json!({"id": "p1", "rating": "PG", "lines": [{"a": 7, "note": "rush"}]}));
    }

    #[test]
    fn an_older_writer_gets_reader_defaults_and_one_decode() {
        let (v1, v2) = (Schema::parse_str(V1).unwrap(), Schema::parse_str(V2).unwrap());
        let reader: &'static Schema = Box::leak(Box::new(v2));
        let codec = Codec::new(v1.clone(), reader).unwrap();
        assert!(!codec.keeps_extra_fields(), "nothing to merge: no second decode");
        let line = Value::Record(vec![("a".into(), Value::Long(1))]);
        let old = Value::Record(vec![("id".into(), Value::String("p0".into())), ("lines".into(), Value::Array(vec![line]))]);
        let json = codec.decode(&body(&v1, old)).unwrap();
        assert_eq!(json, serde_json::json!({"id": "p0", "rating": null, "lines": [{"a": 1, "note": ""}]}));
    }

    #[test]
    fn a_body_that_does_not_match_its_writer_is_an_error() {
        let v1 = Schema::parse_str(V1).unwrap();
        let reader: &'static Schema = Box::leak(Box::new(v1.clone()));
        assert!(Codec::new(v1, reader).unwrap().decode(&[0x01]).is_err());
    }
}
