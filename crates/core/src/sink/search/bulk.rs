//! `_bulk` bodies and responses (pure: no I/O).
//!
//! A batch becomes NDJSON action lines, split into requests of at most `max_bytes` (a single
//! larger document goes alone). Each response item is judged on its own: 2xx → applied; a
//! `delete` answered 404 → applied (the document is already absent, which is what the tombstone
//! asks for); 409 → stale (the index holds this version or a newer one); 429 and 5xx → the whole
//! batch is retried; any other 4xx → rejected with the target's reason.

use crate::sink::SinkRecord;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::HashMap;

/// Default bound of one `_bulk` request body (Elasticsearch's `http.max_content_length` is 100 MiB;
/// its docs advise bulk requests of a few MiB to a few tens of MiB).
pub const MAX_BULK_BYTES: usize = 10 * 1024 * 1024;

/// Elasticsearch refuses a whole bulk request when one `_id` is longer than this.
const MAX_ID_BYTES: usize = 512;

/// One `_bulk` request: its NDJSON body and, per action in order, the record's index in the batch.
#[derive(Debug, Default)]
pub struct Chunk {
    pub body: Vec<u8>,
    pub records: Vec<usize>,
}

/// The NDJSON requests for `batch`, and the records refused before sending (index, reason):
/// those that would fail the whole request rather than one item (a negative version, an `_id`
/// over 512 bytes) or cannot be guarded (a document without a source version). Records `keep`
/// refuses are left out altogether.
pub fn build(
    batch: &[SinkRecord],
    index_prefix: &str,
    max_bytes: usize,
    keep: impl Fn(&SinkRecord) -> bool,
) -> (Vec<Chunk>, Vec<(usize, String)>) {
    let mut chunks = Vec::new();
    let mut current = Chunk::default();
    let mut refused = Vec::new();
    for (i, r) in batch.iter().enumerate().filter(|(_, r)| keep(r)) {
        let lines = match action_lines(r, index_prefix) {
            Ok(lines) => lines,
            Err(reason) => {
                refused.push((i, reason));
                continue;
            }
        };
        if !current.records.is_empty() && current.body.len() + lines.len() > max_bytes {
            chunks.push(std::mem::take(&mut current));
        }
        current.body.extend_from_slice(&lines);
        current.records.push(i);
    }
    if !current.records.is_empty() {
        chunks.push(current);
    }
    (chunks, refused)
}

/// The index of an entity: `<index_prefix><entity>`.
pub fn index_name(index_prefix: &str, entity: crate::event::EntityName) -> String {
    format!("{index_prefix}{}", entity.as_str())
}

fn action_lines(r: &SinkRecord, index_prefix: &str) -> Result<Vec<u8>, String> {
    if r.id.len() > MAX_ID_BYTES {
        return Err(format!("id is {} bytes; a search document id is at most {MAX_ID_BYTES}", r.id.len()));
    }
    if let Some(v) = r.version.filter(|v| *v < 0) {
        return Err(format!("version {v} is negative; external versions are non-negative"));
    }
    let index = index_name(index_prefix, r.entity);
    let mut out = Vec::new();
    match (&r.value, r.version) {
        (Some(doc), Some(version)) => {
            let action = json!({"index": {"_index": index, "_id": r.id, "version": version, "version_type": "external"}});
            push_line(&mut out, &action);
            push_line(&mut out, doc);
        }
        (Some(_), None) => return Err("record without a source version; the search sink guards on it".into()),
        // A tombstone deletes with the version of the delete, so an older state cannot remove a
        // newer document.
        (None, Some(version)) => {
            push_line(&mut out, &json!({"delete": {"_index": index, "_id": r.id, "version": version, "version_type": "external"}}))
        }
        // A tombstone of an id the source never had: nothing to guard, a plain delete.
        (None, None) => push_line(&mut out, &json!({"delete": {"_index": index, "_id": r.id}})),
    }
    Ok(out)
}

fn push_line(out: &mut Vec<u8>, v: &Json) {
    serde_json::to_writer(&mut *out, v).expect("JSON values serialize");
    out.push(b'\n');
}

/// What the target did with one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Applied,
    Stale,
    /// Transient (429, 5xx): the batch must be written again.
    Retry(String),
    /// Permanent (other 4xx, e.g. a value that does not fit the mapping).
    Rejected(String),
}

#[derive(Debug, Deserialize)]
struct Response {
    items: Vec<HashMap<String, Item>>,
}

#[derive(Debug, Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<Json>,
}

/// Pairs each item of a `_bulk` response with the batch index of its record. An unreadable body or
/// a count of items that does not match the request is an `Err` (the caller retries the batch).
pub fn parse_response(body: &[u8], records: &[usize]) -> Result<Vec<(usize, Verdict)>, String> {
    let response: Response = serde_json::from_slice(body).map_err(|e| format!("unreadable _bulk response: {e}"))?;
    if response.items.len() != records.len() {
        return Err(format!("_bulk response has {} items for {} actions", response.items.len(), records.len()));
    }
    response
        .items
        .iter()
        .zip(records)
        .map(|(item, i)| {
            let (op, item) = item.iter().next().ok_or_else(|| "empty _bulk response item".to_string())?;
            Ok((*i, verdict(op, item)))
        })
        .collect()
}

fn verdict(op: &str, item: &Item) -> Verdict {
    match item.status {
        200..=299 => Verdict::Applied,
        404 if op == "delete" => Verdict::Applied,
        409 => Verdict::Stale,
        429 | 500..=599 => Verdict::Retry(format!("item status {}: {}", item.status, reason(item.error.as_ref()))),
        status => Verdict::Rejected(format!("status {status}: {}", reason(item.error.as_ref()))),
    }
}

/// `type: reason` of an Elasticsearch error object, or the raw JSON.
pub fn reason(error: Option<&Json>) -> String {
    match error {
        Some(e) => match (e.get("type").and_then(Json::as_str), e.get("reason").and_then(Json::as_str)) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            _ => e.to_string(),
        },
        None => "no reason given".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeType;

    fn rec(id: &str, version: Option<i64>, value: Option<Json>) -> SinkRecord {
        SinkRecord {
            writer: None,
            entity: crate::catalogue::example::PRODUCTION,
            id: id.into(),
            version,
            value,
            change_type: ChangeType::Update,
            event_ts: 0,
            event_uuids: vec![],
            topic: "t".into(),
            partition: 0,
            offset: 0,
        }
    }

    fn lines(chunk: &Chunk) -> Vec<Json> {
        chunk.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    #[test]
    fn index_and_deletes_carry_external_versions() {
        let batch = [rec("p1", Some(3), Some(json!({"id": "p1"}))), rec("p2", Some(7), None), rec("p3", None, None)];
        let (chunks, refused) = build(&batch, "s-", MAX_BULK_BYTES, |_| true);
        assert!(refused.is_empty());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].records, vec![0, 1, 2]);
        assert!(chunks[0].body.ends_with(b"\n"), "NDJSON ends with a newline");
        let l = lines(&chunks[0]);
        assert_eq!(l[0], json!({"index": {"_index": "s-production", "_id": "p1", "version": 3, "version_type": "external"}}));
        assert_eq!(l[1], json!({"id": "p1"}));
        assert_eq!(l[2], json!({"delete": {"_index": "s-production", "_id": "p2", "version": 7, "version_type": "external"}}));
        assert_eq!(l[3], json!({"delete": {"_index": "s-production", "_id": "p3"}}));
    }

    #[test]
    fn records_that_would_fail_the_whole_request_are_refused_up_front() {
        let long_id = "x".repeat(513);
        let batch = [
            rec("ok", Some(1), Some(json!({}))),
            rec(&long_id, Some(1), None),
            rec("neg", Some(-1), None),
            rec("nov", None, Some(json!({}))),
        ];
        let (chunks, refused) = build(&batch, "s-", MAX_BULK_BYTES, |_| true);
        assert_eq!(chunks[0].records, vec![0]);
        assert_eq!(refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn big_batches_split_and_an_oversized_document_goes_alone() {
        let doc = json!({"title": "t".repeat(100)});
        let mut batch: Vec<_> = (0..10).map(|i| rec(&format!("p{i}"), Some(1), Some(doc.clone()))).collect();
        batch.insert(5, rec("huge", Some(1), Some(json!({"title": "h".repeat(2000)}))));
        let (chunks, _) = build(&batch, "s-", 600, |_| true);
        let all: Vec<usize> = chunks.iter().flat_map(|c| c.records.clone()).collect();
        assert_eq!(all, (0..11).collect::<Vec<_>>(), "every record once, in order");
        assert!(chunks.iter().any(|c| c.records == vec![5]), "the oversized one alone");
        assert!(chunks.iter().filter(|c| c.records != vec![5]).all(|c| c.body.len() <= 600));
        assert!(chunks.len() > 3);
    }

    #[test]
    fn each_item_is_judged_on_its_own() {
        let body = json!({"errors": true, "items": [
            {"index": {"status": 201, "result": "created"}},
            {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "current version [3]"}}},
            {"index": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "failed to parse field [amount]"}}},
            {"delete": {"status": 404, "result": "not_found"}},
            {"index": {"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index"}}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
        ]});
        let got = parse_response(body.to_string().as_bytes(), &[10, 11, 12, 13, 14, 15, 16]).unwrap();
        assert_eq!(got[0], (10, Verdict::Applied));
        assert_eq!(got[1], (11, Verdict::Stale));
        assert!(matches!(&got[2], (12, Verdict::Rejected(r)) if r.contains("document_parsing_exception") && r.contains("amount")));
        assert_eq!(got[3], (13, Verdict::Applied), "a delete of an absent document did what the tombstone asks");
        assert!(matches!(&got[4], (14, Verdict::Rejected(_))));
        assert!(matches!(&got[5], (15, Verdict::Retry(r)) if r.contains("queue full")));
        assert!(matches!(&got[6], (16, Verdict::Retry(_))));
    }

    #[test]
    fn mismatched_or_unreadable_responses_are_errors() {
        assert!(parse_response(b"<html>", &[0]).is_err());
        assert!(parse_response(br#"{"errors":false,"items":[]}"#, &[0]).is_err());
    }
}
