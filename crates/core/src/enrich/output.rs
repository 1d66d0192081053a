//! What the enricher writes: enriched records, tombstones, retry parcels and dead letters, each
//! with the headers that keep it traceable.

use crate::event::{ChangeEvent, EntityName};
use rdkafka::message::{Header, OwnedHeaders};
use uuid::Uuid;

pub const H_ENTITY: &str = "slate-entity";
pub const H_VERSION: &str = "slate-version";
pub const H_CHANGE_TYPE: &str = "slate-change-type";
pub const H_EVENT_UUIDS: &str = "slate-event-uuids";
pub const H_EVENT_TS: &str = "slate-event-ts";
pub const H_ATTEMPT: &str = "slate-attempt";
pub const H_NOT_BEFORE: &str = "slate-not-before";
pub const H_LAST_ERROR: &str = "slate-last-error";
pub const H_DLQ_REASON: &str = "slate-dlq-reason";
pub const H_DLQ_STAGE: &str = "slate-dlq-stage";
pub const H_SOURCE_TOPIC: &str = "slate-source-topic";
pub const H_SOURCE_PARTITION: &str = "slate-source-partition";
pub const H_SOURCE_OFFSET: &str = "slate-source-offset";
pub const H_TRACEPARENT: &str = "traceparent";

/// Why a message went to the dead-letter topic; also the `reason` label of
/// `slate_dead_lettered_total` (so it stays low-cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqStage {
    /// The input could not be decoded (bad bytes, unknown entity, oversized, unknown schema id).
    Decode,
    /// The source rejected the request permanently.
    Fetch,
    /// The fetched state did not fit the Avro record.
    Encode,
    /// Every retry round failed.
    RetriesExhausted,
    /// A sink's target refused the record for good.
    SinkRejected,
}

impl DlqStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Fetch => "fetch",
            Self::Encode => "encode",
            Self::RetriesExhausted => "retries_exhausted",
            Self::SinkRejected => "sink_rejected",
        }
    }
}

/// Where an input message was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One message to produce.
#[derive(Debug)]
pub struct Outgoing {
    pub topic: String,
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

impl Outgoing {
    pub fn owned_headers(&self) -> OwnedHeaders {
        self.headers
            .iter()
            .fold(OwnedHeaders::new_with_capacity(self.headers.len()), |h, (k, v)| h.insert(Header { key: k, value: Some(v.as_bytes()) }))
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

pub fn join_uuids(uuids: &[Uuid]) -> String {
    uuids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",")
}

/// Parses a `slate-event-uuids` header; malformed entries are skipped.
pub fn split_uuids(value: &str) -> Vec<Uuid> {
    value.split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

fn common_headers(entity: EntityName, newest: &ChangeEvent, version: Option<i64>) -> Vec<(&'static str, String)> {
    let mut h = vec![(H_ENTITY, entity.to_string()), (H_CHANGE_TYPE, newest.change_type.as_str().to_string())];
    if let Some(v) = version {
        h.push((H_VERSION, v.to_string()));
    }
    if let Some(t) = &newest.trace {
        h.push((H_TRACEPARENT, t.clone()));
    }
    h
}

/// An enriched record (Avro in the Confluent wire format) keyed by id.
pub fn record(topic: String, entity: EntityName, id: &str, version: i64, newest: &ChangeEvent, avro: Vec<u8>) -> Outgoing {
    Outgoing { topic, key: id.as_bytes().to_vec(), payload: Some(avro), headers: common_headers(entity, newest, Some(version)) }
}

/// A tombstone: the entity is deleted (`version` = the delete's version) or unknown at the source
/// (`version = None`). The folded event uuids travel in a header since there is no body.
pub fn tombstone(topic: String, entity: EntityName, id: &str, version: Option<i64>, newest: &ChangeEvent, uuids: &[Uuid]) -> Outgoing {
    let mut headers = common_headers(entity, newest, version);
    headers.push((H_EVENT_UUIDS, join_uuids(uuids)));
    headers.push((H_EVENT_TS, newest.ts.to_string()));
    Outgoing { topic, key: id.as_bytes().to_vec(), payload: None, headers }
}

/// A key parked on the retry topic: the newest event, the round it enters, and when it is due.
pub fn retry_parcel(topic: String, newest: &ChangeEvent, uuids: &[Uuid], attempt: u32, not_before_ms: i64, error: &str) -> Outgoing {
    Outgoing {
        topic,
        key: newest.id.as_bytes().to_vec(),
        payload: Some(newest.to_json()),
        headers: vec![
            (H_ENTITY, newest.entity.to_string()),
            (H_ATTEMPT, attempt.to_string()),
            (H_NOT_BEFORE, not_before_ms.to_string()),
            (H_EVENT_UUIDS, join_uuids(uuids)),
            (H_LAST_ERROR, truncate(error)),
        ],
    }
}

/// A dead letter: the original key and bytes (or the event, when it was decoded), the reason,
/// the stage and where it was read from.
pub fn dead_letter(
    topic: String,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    stage: DlqStage,
    reason: &str,
    from: &Coordinates,
    uuids: &[Uuid],
) -> Outgoing {
    let mut headers = vec![
        (H_DLQ_REASON, truncate(reason)),
        (H_DLQ_STAGE, stage.as_str().to_string()),
        (H_SOURCE_TOPIC, from.topic.clone()),
        (H_SOURCE_PARTITION, from.partition.to_string()),
        (H_SOURCE_OFFSET, from.offset.to_string()),
    ];
    if !uuids.is_empty() {
        headers.push((H_EVENT_UUIDS, join_uuids(uuids)));
    }
    Outgoing { topic, key, payload, headers }
}

/// Header values stay small: a reason is for people, not a payload.
fn truncate(s: &str) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeType;

    #[test]
    fn tombstones_carry_uuids_and_version() {
        let e = ChangeEvent::new(ChangeType::Delete, crate::catalogue::example::PAYMENT, "pay-1", 7);
        let u = vec![e.uuid, Uuid::new_v4()];
        let t = tombstone("slate.payment.enriched".into(), crate::catalogue::example::PAYMENT, "pay-1", Some(4), &e, &u);
        assert!(t.payload.is_none());
        assert_eq!(t.header(H_VERSION), Some("4"));
        assert_eq!(split_uuids(t.header(H_EVENT_UUIDS).unwrap()), u);
        assert_eq!(t.header(H_CHANGE_TYPE), Some("DELETE"));
    }

    #[test]
    fn reasons_are_bounded() {
        let from = Coordinates { topic: "t".into(), partition: 1, offset: 9 };
        let d = dead_letter("dlq".into(), b"k".to_vec(), None, DlqStage::Decode, &"é".repeat(2000), &from, &[]);
        assert!(d.header(H_DLQ_REASON).unwrap().len() <= 1024 + '…'.len_utf8());
        assert_eq!(d.header(H_SOURCE_OFFSET), Some("9"));
    }
}
