//! Hand-made `SinkRecord`s shared by the SQL sink tests (PostgreSQL and SQLite).
#![allow(dead_code)]

use serde_json::{Value as Json, json};
use slate::event::{ChangeType, EntityName};
use slate::sink::SinkRecord;

pub fn rec(entity: EntityName, id: &str, version: Option<i64>, value: Option<Json>) -> SinkRecord {
    SinkRecord {
        writer: None,
        entity,
        id: id.into(),
        version,
        change_type: if value.is_some() { ChangeType::Update } else { ChangeType::Delete },
        value,
        event_ts: 1_790_000_000_123,
        event_uuids: vec![uuid::Uuid::new_v4()],
        topic: "direct".into(),
        partition: 0,
        offset: 0,
    }
}

pub fn tombstone(entity: EntityName, id: &str, version: Option<i64>) -> SinkRecord {
    rec(entity, id, version, None)
}

pub fn production(id: &str, v: i64, currency: &str) -> SinkRecord {
    let value = json!({"id": id, "version": v, "title": format!("Title of {id}"), "status": "DEVELOPMENT", "genre": "drama",
        "currency": currency, "budget_id": null, "schedule_id": null});
    rec(slate::studio::kind::PRODUCTION, id, Some(v), Some(value))
}

pub fn payment(id: &str, v: i64, production: &str, amount: i64, status: &str, currency: &str) -> SinkRecord {
    let value = json!({"id": id, "version": v, "production_id": production, "talent_id": "tal-000001", "amount": amount,
        "currency": currency, "status": status, "due_date": "2027-06-01"});
    rec(slate::studio::kind::PAYMENT, id, Some(v), Some(value))
}

pub fn budget(id: &str, v: i64, production: &str, lines: &[(&str, i64)]) -> SinkRecord {
    let items: Vec<Json> = lines.iter().map(|(c, a)| json!({"category": c, "amount": a})).collect();
    let total: i64 = lines.iter().map(|(_, a)| a).sum();
    let value = json!({"id": id, "version": v, "production_id": production, "currency": "USD", "lines": items, "total": total});
    rec(slate::studio::kind::BUDGET, id, Some(v), Some(value))
}

pub fn cash_flow(id: &str, v: i64, production: &str, months: &[(&str, i64)]) -> SinkRecord {
    let items: Vec<Json> = months.iter().map(|(m, a)| json!({"month": m, "amount": a})).collect();
    let total: i64 = months.iter().map(|(_, a)| a).sum();
    let value = json!({"id": id, "version": v, "production_id": production, "currency": "USD", "months": items, "total": total});
    rec(slate::studio::kind::CASH_FLOW, id, Some(v), Some(value))
}
