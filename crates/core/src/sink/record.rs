//! Enriched messages as sinks see them: Avro records (Confluent wire format, writer schema from
//! the registry, read with the embedded schema so a newer writer still decodes, and keeping the
//! fields a newer writer added: see `codec.rs`) or tombstones.

use super::codec::Codec;
use crate::catalogue::Catalogue;
use crate::enrich::avro;
use crate::enrich::output::{H_CHANGE_TYPE, H_EVENT_TS, H_EVENT_UUIDS, H_VERSION, split_uuids};
use crate::event::{ChangeType, EntityName};
use crate::registry::RegistryClient;
use apache_avro::Schema;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Why data written with `writer` cannot be read with `reader`, naming the first record field at
/// fault (`None` when it can).
fn unreadable(writer: &Schema, reader: &Schema) -> Option<String> {
    use crate::registry::compat::can_read;
    let why = can_read(writer, reader)?;
    if let (Schema::Record(w), Schema::Record(r)) = (writer, reader) {
        for field in &r.fields {
            let written = w.fields.iter().find(|f| f.name == field.name);
            let fails = match written {
                Some(wf) => can_read(&wf.schema, &field.schema).is_some(),
                None => field.default.is_none(),
            };
            if fails {
                return Some(format!("field `{}`: {why}", field.name));
            }
        }
    }
    Some(why)
}

/// One enriched record or tombstone, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub entity: EntityName,
    pub id: String,
    /// Source version; `None` only for a tombstone of an id the source never had.
    pub version: Option<i64>,
    /// The record as JSON (Avro field names; dates `YYYY-MM-DD`; timestamps epoch ms; uuids as
    /// strings); `None` for a tombstone (the entity is deleted).
    pub value: Option<Json>,
    pub change_type: ChangeType,
    /// Source timestamp of the newest event behind this record (epoch ms).
    pub event_ts: i64,
    /// Every event uuid folded into this record.
    pub event_uuids: Vec<Uuid>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The writer schema the value was decoded with (`None` for tombstones and hand-made
    /// records): the SQL sink evolves its tables from it.
    pub writer: Option<&'static apache_avro::Schema>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The message is bad: dead-letter it.
    #[error("{0}")]
    Bad(String),
    /// The registry is unreachable: retry later.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
    /// The writer schema cannot be read with this sink's schema of the entity (a contract
    /// change it cannot follow): halt the entity, never dead-letter its records.
    #[error("{reason}")]
    Incompatible { entity: EntityName, reason: String },
}

pub struct RecordDecoder {
    topic_prefix: String,
    registry: RegistryClient,
    /// The reader schema of each entity.
    catalogue: Arc<Catalogue>,
    /// One codec per (writer schema id, entity), built on first use.
    codecs: Mutex<HashMap<(u32, EntityName), Arc<Codec>>>,
}

impl RecordDecoder {
    pub fn new(topic_prefix: String, registry: RegistryClient, catalogue: Arc<Catalogue>) -> Self {
        avro::limit_allocations();
        Self { topic_prefix, registry, catalogue, codecs: Mutex::new(HashMap::new()) }
    }

    pub async fn decode(&self, m: &OwnedMessage) -> Result<SinkRecord, RecordError> {
        let entity = m
            .topic()
            .strip_prefix(&self.topic_prefix)
            .and_then(|t| t.strip_suffix(".enriched"))
            .ok_or_else(|| RecordError::Bad(format!("topic '{}' is not <prefix><entity>.enriched", m.topic())))?;
        let entity = EntityName::lookup(entity)
            .ok()
            .filter(|e| self.catalogue.contains(*e))
            .ok_or_else(|| RecordError::Bad(format!("topic '{}' names entity '{entity}', which is not in the catalogue", m.topic())))?;
        let id = m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| RecordError::Bad("no key (the entity id)".into()))?;
        let header = |k: &str| {
            m.headers().and_then(|h| h.iter().find(|h| h.key == k)).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let change_type = match header(H_CHANGE_TYPE).as_deref() {
            Some("CREATE") => ChangeType::Create,
            Some("DELETE") => ChangeType::Delete,
            _ => ChangeType::Update,
        };
        let base = SinkRecord {
            entity,
            id,
            version: header(H_VERSION).and_then(|v| v.parse().ok()),
            value: None,
            change_type,
            event_ts: header(H_EVENT_TS).and_then(|v| v.parse().ok()).unwrap_or(0),
            event_uuids: header(H_EVENT_UUIDS).map(|h| split_uuids(&h)).unwrap_or_default(),
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            writer: None,
        };
        let Some(payload) = m.payload() else { return Ok(base) };
        let (schema_id, body) = avro::decode(payload).map_err(|e| RecordError::Bad(e.to_string()))?;
        let codec = self.codec(schema_id, entity).await?;
        let json = codec.decode(body).map_err(|e| RecordError::Bad(format!("avro body does not match schema {schema_id}: {e}")))?;
        let version = json.get("version").and_then(Json::as_i64).ok_or_else(|| RecordError::Bad("record without a version".into()))?;
        let meta = json.get("_meta").cloned().unwrap_or(Json::Null);
        Ok(SinkRecord {
            version: Some(version),
            event_ts: meta.get("event_ts").and_then(Json::as_i64).unwrap_or(base.event_ts),
            event_uuids: meta
                .get("coalesced_uuids")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(|u| u.as_str()?.parse().ok()).collect())
                .unwrap_or_default(),
            change_type: match meta.get("change_type").and_then(Json::as_str) {
                Some("CREATE") => ChangeType::Create,
                Some("DELETE") => ChangeType::Delete,
                _ => ChangeType::Update,
            },
            value: Some(json),
            writer: Some(codec.writer()),
            ..base
        })
    }

    async fn codec(&self, id: u32, entity: EntityName) -> Result<Arc<Codec>, RecordError> {
        if let Some(c) = self.codecs.lock().expect("codec cache lock poisoned").get(&(id, entity)) {
            return Ok(c.clone());
        }
        let fetched = self.registry.schema_by_id(id).await.map_err(|e| {
            if e.is_transient() { RecordError::Unavailable(e.to_string()) } else { RecordError::Bad(format!("writer schema {id}: {e}")) }
        })?;
        let writer = Schema::parse_str(&fetched.schema).map_err(|e| RecordError::Bad(format!("writer schema {id} does not parse: {e}")))?;
        let declared = self.catalogue.get(entity).expect("decode checked the entity");
        let reader = &declared.schema;
        if let Some(why) = unreadable(&writer, reader) {
            return Err(RecordError::Incompatible {
                entity,
                reason: format!(
                    "entity `{entity}`: writer schema {id} cannot be read as this sink's {}: {why}; put the new contract in \
                     the catalogue's schema file, migrate the target if it holds the field, and restart the sink: nothing of \
                     `{entity}` is committed until then",
                    declared.record
                ),
            });
        }
        let codec =
            Codec::new(writer, reader).map_err(|e| RecordError::Bad(format!("writer schema {id} cannot be read as {entity}: {e}")))?;
        let codec = Arc::new(codec);
        self.codecs.lock().expect("codec cache lock poisoned").insert((id, entity), codec.clone());
        Ok(codec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    #[test]
    fn an_unreadable_writer_is_explained_by_its_field() {
        let reader = record(r#"{"name":"id","type":"string"},{"name":"total","type":"long"}"#);
        let newer =
            record(r#"{"name":"id","type":"string"},{"name":"total","type":"long"},{"name":"po","type":["null","string"],"default":null}"#);
        assert_eq!(unreadable(&newer, &reader), None, "an added field is readable");
        let changed = record(r#"{"name":"id","type":"string"},{"name":"total","type":"string"}"#);
        let why = unreadable(&changed, &reader).expect("string cannot be read as long");
        assert!(why.starts_with("field `total`: "), "{why}");
        let dropped = record(r#"{"name":"id","type":"string"}"#);
        assert!(unreadable(&dropped, &reader).expect("a required field is gone").starts_with("field `total`"));
    }
}
