//! Records → typed rows. Every value is checked here, before any SQL runs, so one bad record is
//! rejected on its own instead of failing the statement (and with it the whole batch).

use super::plan::{Col, Table};
use crate::event::EntityName;
use crate::sink::{SinkRecord, WriteOutcome};
use crate::time::parse_date;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest id or reference (`*_id`) accepted: well under PostgreSQL's ~2.7 kB btree entry limit.
const MAX_KEY_BYTES: usize = 512;

/// One checked value: text columns (dates included) bind as text, numbers as int8.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Text(Option<String>),
    Int(i64),
}

/// A validated record, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    /// Index of the record in the batch (for rejections).
    pub index: usize,
    pub kind: EntityName,
    pub id: String,
    /// `None`: a tombstone for an id the source never had.
    pub version: Option<i64>,
    /// Epoch ms; 0 = unknown (stored as NULL).
    pub event_ms: i64,
    /// `None` for a tombstone.
    pub live: Option<Live>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Live {
    /// One per `Table::columns`, in order.
    pub cells: Vec<Cell>,
    /// Per child table (as `Table::children`), one entry per element, each with one cell per
    /// `Child::columns`.
    pub children: Vec<Vec<Vec<Cell>>>,
}

/// Checks a record against its table: the reason is what the dead-letter header will say.
pub(super) fn validate(index: usize, r: &SinkRecord, t: &Table) -> Result<Row, String> {
    check_key("id", &r.id)?;
    let mut row = Row { index, kind: r.entity, id: r.id.clone(), version: r.version, event_ms: r.event_ts.max(0), live: None };
    let Some(value) = &r.value else { return Ok(row) };
    let Some(obj) = value.as_object() else { return Err("record value is not an object".into()) };
    match obj.get("id").and_then(Json::as_str) {
        Some(id) if id == r.id => {}
        other => return Err(format!("field `id` {other:?} does not match the key '{}'", r.id)),
    }
    let version = obj.get("version").and_then(Json::as_i64).ok_or("field `version`: missing or not a long")?;
    if r.version != Some(version) {
        return Err(format!("field `version` {version} does not match the record's version {:?}", r.version));
    }
    let cells = t.columns.iter().map(|c| cell(obj, &c.field, c.col, c.required)).collect::<Result<Vec<_>, _>>()?;
    let mut children = Vec::with_capacity(t.children.len());
    for child in &t.children {
        let items = match obj.get(&child.field) {
            None | Some(Json::Null) => &Vec::new(),
            Some(Json::Array(items)) => items,
            Some(other) => return Err(format!("field `{}`: expected an array, got {other}", child.field)),
        };
        let mut elements = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item = item.as_object().ok_or_else(|| format!("field `{}[{i}]`: not a record", child.field))?;
            let cells = child
                .columns
                .iter()
                .map(|c| cell(item, &c.field, c.col, c.required).map_err(|e| format!("{}[{i}].{e}", child.field)))
                .collect::<Result<Vec<_>, _>>()?;
            elements.push(cells);
        }
        children.push(elements);
    }
    row.live = Some(Live { cells, children });
    Ok(row)
}

fn cell(obj: &serde_json::Map<String, Json>, name: &str, col: Col, required: bool) -> Result<Cell, String> {
    let v = obj.get(name).unwrap_or(&Json::Null);
    if v.is_null() {
        return match required {
            true => Err(format!("field `{name}`: missing or null")),
            false => Ok(Cell::Text(None)),
        };
    }
    let text = |v: &Json| -> Result<String, String> {
        let s = v.as_str().ok_or_else(|| format!("field `{name}`: expected a string, got {v}"))?;
        if s.contains('\0') {
            return Err(format!("field `{name}`: contains a NUL character, which PostgreSQL text cannot store"));
        }
        if name.ends_with("_id") {
            check_key(name, s)?;
        }
        Ok(s.to_string())
    };
    match col {
        Col::Text => text(v).map(|s| Cell::Text(Some(s))),
        Col::BigInt | Col::Timestamp => v.as_i64().map(Cell::Int).ok_or_else(|| format!("field `{name}`: expected a long, got {v}")),
        Col::Double => {
            v.as_f64().map(|f| Cell::Text(Some(f.to_string()))).ok_or_else(|| format!("field `{name}`: expected a number, got {v}"))
        }
        Col::Bool => v
            .as_bool()
            .map(|b| Cell::Text(Some(if b { "1" } else { "0" }.into())))
            .ok_or_else(|| format!("field `{name}`: expected a boolean, got {v}")),
        Col::Json => {
            let s = v.to_string();
            // jsonb cannot hold the NUL character, even escaped.
            if s.contains("\\u0000") {
                return Err(format!("field `{name}`: contains a NUL character, which PostgreSQL jsonb cannot store"));
            }
            Ok(Cell::Text(Some(s)))
        }
        Col::Date => {
            let s = text(v)?;
            // PostgreSQL has no year 0 (1 BC is year 1 BC), so "0000-…" is refused too.
            if parse_date(&s).is_none() || s.starts_with("0000") {
                return Err(format!("field `{name}`: '{s}' is not a YYYY-MM-DD date"));
            }
            Ok(Cell::Text(Some(s)))
        }
        Col::Month => {
            let s = text(v)?;
            let first = format!("{s}-01");
            if s.len() != 7 || parse_date(&first).is_none() || s.starts_with("0000") {
                return Err(format!("field `{name}`: '{s}' is not a YYYY-MM month"));
            }
            Ok(Cell::Text(Some(first)))
        }
    }
}

fn check_key(name: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_KEY_BYTES || s.contains('\0') {
        return Err(format!("`{name}` must be 1..={MAX_KEY_BYTES} bytes without NUL characters (got {} bytes)", s.len()));
    }
    Ok(())
}

/// Keeps one row per (entity, id): the one reflecting the newest source state. Returns the
/// winners (sorted by entity table and id, the order rows are locked in, which avoids deadlocks
/// between concurrent writers) and how many rows they superseded.
///
/// Batch order is Kafka order (one key lives in one partition), but versions decide: a versioned
/// row replaces the current winner only with a higher version. An unversioned tombstone (the
/// source does not know the id) describes the source at its fetch, after everything before it
/// in the partition, so it replaces any earlier row; a versioned row after it replaces it.
pub(super) fn newest_per_id(rows: Vec<Row>) -> (Vec<Row>, usize) {
    let mut best: HashMap<(EntityName, String), Row> = HashMap::new();
    let mut superseded = 0;
    for row in rows {
        let key = (row.kind, row.id.clone());
        match best.get(&key) {
            Some(cur) if matches!((cur.version, row.version), (Some(c), Some(n)) if n <= c) => superseded += 1,
            Some(_) => {
                superseded += 1;
                best.insert(key, row);
            }
            None => {
                best.insert(key, row);
            }
        }
    }
    let mut winners: Vec<Row> = best.into_values().collect();
    winners.sort_by(|a, b| (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id)));
    (winners, superseded)
}

/// A batch checked and folded for writing, shared by both backends: the rows to write, the
/// records rejected before any SQL, and how many records were valid.
pub(super) struct Prepared {
    pub winners: Vec<Row>,
    pub num_valid: usize,
    pub outcome: WriteOutcome,
}

/// `tables` holds the plan of every entity the batch may carry; records of `halted` entities are
/// left out (listed in the outcome's `halted`, neither written nor counted).
pub(super) fn prepare(batch: &[SinkRecord], tables: &HashMap<EntityName, Arc<Table>>, halted: &super::tables::Halted) -> Prepared {
    let mut outcome = WriteOutcome::default();
    let mut valid = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        if let Some(reason) = halted.get(&r.entity) {
            if !outcome.halted.iter().any(|(e, _)| *e == r.entity) {
                outcome.halted.push((r.entity, reason.clone()));
            }
            continue;
        }
        let Some(t) = tables.get(&r.entity) else {
            outcome.rejected.push((i, format!("the SQL sink has no table for entity `{}`", r.entity)));
            continue;
        };
        match validate(i, r, t) {
            Ok(row) => valid.push(row),
            Err(reason) => outcome.rejected.push((i, reason)),
        }
    }
    let num_valid = valid.len();
    let (winners, _superseded) = newest_per_id(valid);
    Prepared { winners, num_valid, outcome }
}

impl Prepared {
    /// The outcome once the backend applied `applied` rows and refused `refused` records: every
    /// other valid record was not newer than what the table held (stale).
    pub fn finish(mut self, applied: usize, refused: Vec<(usize, String)>) -> WriteOutcome {
        self.outcome.applied = applied;
        self.outcome.stale = self.num_valid - applied - refused.len();
        self.outcome.rejected.extend(refused);
        self.outcome.rejected.sort_by_key(|(i, _)| *i);
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeType;
    use serde_json::json;

    fn record(kind: EntityName, id: &str, version: Option<i64>, value: Option<Json>) -> SinkRecord {
        SinkRecord {
            writer: None,
            entity: kind,
            id: id.into(),
            version,
            value,
            change_type: ChangeType::Update,
            event_ts: 1_700_000_000_000,
            event_uuids: vec![],
            topic: "t".into(),
            partition: 0,
            offset: 0,
        }
    }

    fn table(kind: EntityName) -> Table {
        Table::of(kind, &crate::catalogue::Catalogue::example(kind).schema).unwrap()
    }

    fn validate_with(i: usize, t: &Table, r: &SinkRecord) -> Result<Row, String> {
        validate(i, r, t)
    }

    fn validate_schedule(i: usize, r: &SinkRecord) -> Result<Row, String> {
        validate(i, r, &table(crate::catalogue::example::SCHEDULE))
    }

    fn schedule(id: &str, v: i64, launch: &str) -> SinkRecord {
        let value = json!({"id": id, "version": v, "production_id": "prod-1", "start_date": "2027-01-01", "launch_date": launch});
        record(crate::catalogue::example::SCHEDULE, id, Some(v), Some(value))
    }

    #[test]
    fn valid_records_become_typed_cells() {
        let value = json!({"id": "cf-1", "version": 2, "production_id": "prod-1", "currency": "USD", "total": 30,
            "months": [{"month": "2027-01", "amount": 10}, {"month": "2027-02", "amount": 20}]});
        let row = validate_with(
            0,
            &table(crate::catalogue::example::CASH_FLOW),
            &record(crate::catalogue::example::CASH_FLOW, "cf-1", Some(2), Some(value)),
        )
        .unwrap();
        let live = row.live.unwrap();
        assert_eq!(live.cells, vec![Cell::Text(Some("prod-1".into())), Cell::Text(Some("USD".into())), Cell::Int(30)]);
        assert_eq!(live.children[0][1], vec![Cell::Text(Some("2027-02-01".into())), Cell::Int(20)]);
        assert!(
            validate_with(1, &table(crate::catalogue::example::PAYMENT), &record(crate::catalogue::example::PAYMENT, "pay-1", None, None))
                .unwrap()
                .live
                .is_none()
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (schedule("sch-1", 1, "2027-02-30"), "launch_date"),
            (schedule("sch-1", 1, "soon"), "launch_date"),
            (schedule("sch-1", 1, "0000-01-01"), "launch_date"),
            (record(crate::catalogue::example::BUDGET, "bud-1", Some(1), Some(json!({"id": "bud-1", "version": 1}))), "production_id"),
            (
                record(crate::catalogue::example::SCHEDULE, "sch-1", Some(1), Some(json!({"id": "sch-2", "version": 1}))),
                "does not match the key",
            ),
            (record(crate::catalogue::example::SCHEDULE, "sch-1", Some(1), Some(json!({"id": "sch-1", "version": 3}))), "version"),
            (record(crate::catalogue::example::TALENT, "", None, None), "`id`"),
        ];
        for (r, want) in cases {
            let e = validate(0, &r, &table(r.entity)).unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let nul = json!({"id": "tal-1", "version": 1, "name": "a\u{0}b", "role": "ACTOR", "deals": []});
        assert!(
            validate_with(
                0,
                &table(crate::catalogue::example::TALENT),
                &record(crate::catalogue::example::TALENT, "tal-1", Some(1), Some(nul))
            )
            .unwrap_err()
            .contains("NUL")
        );
        let money = json!({"id": "bud-1", "version": 1, "production_id": "p", "currency": "USD", "total": "lots", "lines": []});
        assert!(
            validate_with(
                0,
                &table(crate::catalogue::example::BUDGET),
                &record(crate::catalogue::example::BUDGET, "bud-1", Some(1), Some(money))
            )
            .unwrap_err()
            .contains("`total`")
        );
    }

    #[test]
    fn newest_version_wins_within_a_batch() {
        let rows = ["2027-03-01", "2027-05-01", "2027-04-01"]
            .iter()
            .zip([2, 3, 1])
            .enumerate()
            .map(|(i, (d, v))| validate_schedule(i, &schedule("sch-1", v, d)).unwrap())
            .collect();
        let (winners, superseded) = newest_per_id(rows);
        assert_eq!((winners.len(), superseded), (1, 2));
        assert_eq!(winners[0].version, Some(3));
    }

    #[test]
    fn unversioned_tombstone_wins_over_earlier_rows_only() {
        let tomb = |i| {
            validate_with(i, &table(crate::catalogue::example::SCHEDULE), &record(crate::catalogue::example::SCHEDULE, "sch-1", None, None))
                .unwrap()
        };
        let (w, _) = newest_per_id(vec![validate_schedule(0, &schedule("sch-1", 4, "2027-03-01")).unwrap(), tomb(1)]);
        assert_eq!(w[0].version, None);
        let (w, _) = newest_per_id(vec![tomb(0), validate_schedule(1, &schedule("sch-1", 1, "2027-03-01")).unwrap()]);
        assert_eq!(w[0].version, Some(1));
    }
}
