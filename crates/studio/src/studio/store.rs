//! The studio's in-memory source of truth.
//!
//! Contract: every mutation bumps the version of each entity it touches by exactly one (per
//! entity id, starting at 1) and returns one [`Change`] per touched entity, in the order applied.
//! A delete keeps a tombstone with its own version, so a re-created id continues the sequence and
//! downstream version guards stay monotonic. Derived entities (the cash-flow projection) change in
//! the same atomic step as their inputs.

use super::kind;
use super::model::*;
use crate::event::{ChangeType, EntityName};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub version: i64,
    /// `None` once deleted: the tombstone keeps the version of the delete.
    pub body: Option<Body>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub entity: EntityName,
    pub id: String,
    pub change_type: ChangeType,
    pub version: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StudioError {
    #[error("{entity} '{id}' not found")]
    NotFound { entity: EntityName, id: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

/// The result of a batched read: live entities, tombstones (id, version of the delete) and ids
/// that never existed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchRead {
    pub found: Vec<(String, i64, Body)>,
    pub deleted: Vec<(String, i64)>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewProduction {
    pub title: String,
    pub genre: String,
    pub currency: String,
    pub start_date: i32,
    pub launch_date: i32,
    pub lines: Vec<BudgetLine>,
}

#[derive(Default)]
pub struct Store {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    tables: [BTreeMap<String, Record>; 6],
    next_number: [u64; 6],
}

fn slot(kind: EntityName) -> usize {
    kind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL")
}

fn prefix(kind: EntityName) -> &'static str {
    match kind {
        kind::PRODUCTION => "prod",
        kind::TALENT => "tal",
        kind::SCHEDULE => "sch",
        kind::BUDGET => "bud",
        kind::CASH_FLOW => "cf",
        kind::PAYMENT => "pay",
        other => unreachable!("the studio holds only its own entities, not {other}"),
    }
}

/// A production's budget, schedule and cash flow share its number: prod-000007 → bud-000007.
fn sibling_id(production_id: &str, kind: EntityName) -> String {
    let number = production_id.rsplit('-').next().unwrap_or(production_id);
    format!("{}-{number}", prefix(kind))
}

fn invalid(field: &'static str, message: impl Into<String>) -> StudioError {
    StudioError::Invalid { field, message: message.into() }
}

fn check_one_of(field: &'static str, value: &str, allowed: &[&str]) -> Result<(), StudioError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(invalid(field, format!("'{value}' is not one of {}", allowed.join(", "))))
}

fn check_currency(value: &str) -> Result<(), StudioError> {
    if value.len() == 3 && value.chars().all(|c| c.is_ascii_uppercase()) {
        return Ok(());
    }
    Err(invalid("currency", format!("'{value}' is not an ISO 4217 code such as USD")))
}

impl State {
    fn table(&self, kind: EntityName) -> &BTreeMap<String, Record> {
        &self.tables[slot(kind)]
    }

    fn live(&self, kind: EntityName, id: &str) -> Result<&Body, StudioError> {
        self.table(kind).get(id).and_then(|r| r.body.as_ref()).ok_or_else(|| StudioError::NotFound { entity: kind, id: id.to_string() })
    }

    fn new_id(&mut self, kind: EntityName) -> String {
        let n = &mut self.next_number[slot(kind)];
        *n += 1;
        format!("{}-{:06}", prefix(kind), *n)
    }

    fn put(&mut self, id: &str, body: Body) -> Change {
        let kind = body.kind();
        let table = &mut self.tables[slot(kind)];
        let (version, change_type) = match table.get(id) {
            Some(Record { version, body: Some(_) }) => (version + 1, ChangeType::Update),
            Some(Record { version, body: None }) => (version + 1, ChangeType::Create),
            None => (1, ChangeType::Create),
        };
        table.insert(id.to_string(), Record { version, body: Some(body) });
        Change { entity: kind, id: id.to_string(), change_type, version }
    }

    fn delete(&mut self, kind: EntityName, id: &str) -> Option<Change> {
        let record = self.tables[slot(kind)].get_mut(id)?;
        record.body.take()?;
        record.version += 1;
        Some(Change { entity: kind, id: id.to_string(), change_type: ChangeType::Delete, version: record.version })
    }

    /// Recomputes the projection of a production from its current budget and schedule.
    fn project(&mut self, production_id: &str) -> Result<Change, StudioError> {
        let Body::Budget(budget) = self.live(kind::BUDGET, &sibling_id(production_id, kind::BUDGET))? else {
            unreachable!("budget table holds budgets")
        };
        let Body::Schedule(schedule) = self.live(kind::SCHEDULE, &sibling_id(production_id, kind::SCHEDULE))? else {
            unreachable!("schedule table holds schedules")
        };
        let cf = project_cash_flow(production_id, budget, schedule);
        Ok(self.put(&sibling_id(production_id, kind::CASH_FLOW), Body::CashFlow(cf)))
    }
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> Result<T, StudioError>) -> Result<T, StudioError> {
        f(&mut self.state.write().expect("studio store lock poisoned"))
    }

    pub fn batch_get(&self, kind: EntityName, ids: &[String]) -> BatchRead {
        let state = self.state.read().expect("studio store lock poisoned");
        let table = state.table(kind);
        let mut out = BatchRead::default();
        for id in ids {
            match table.get(id) {
                Some(Record { version, body: Some(body) }) => out.found.push((id.clone(), *version, body.clone())),
                Some(Record { version, body: None }) => out.deleted.push((id.clone(), *version)),
                None => out.missing.push(id.clone()),
            }
        }
        out
    }

    /// Ids of live entities of `kind` after `after` (exclusive), ascending, at most `limit`.
    pub fn list_ids(&self, kind: EntityName, after: Option<&str>, limit: usize) -> Vec<String> {
        let state = self.state.read().expect("studio store lock poisoned");
        let range = match after {
            Some(a) => state.table(kind).range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => state.table(kind).range::<str, _>(..),
        };
        range.filter(|(_, r)| r.body.is_some()).take(limit).map(|(id, _)| id.clone()).collect()
    }

    pub fn count(&self, kind: EntityName) -> usize {
        let state = self.state.read().expect("studio store lock poisoned");
        state.table(kind).values().filter(|r| r.body.is_some()).count()
    }

    /// Creates a production with its budget, schedule and cash-flow projection.
    pub fn create_production(&self, new: NewProduction) -> Result<(String, Vec<Change>), StudioError> {
        if new.title.trim().is_empty() {
            return Err(invalid("title", "must not be empty"));
        }
        check_currency(&new.currency)?;
        if new.launch_date < new.start_date {
            return Err(invalid("launch_date", "must not be before start_date"));
        }
        for line in &new.lines {
            check_one_of("category", &line.category, BUDGET_CATEGORIES)?;
            if line.amount < 0 {
                return Err(invalid("amount", format!("{} is negative", line.amount)));
            }
        }
        self.write(|s| {
            let id = s.new_id(kind::PRODUCTION);
            let (budget_id, schedule_id) = (sibling_id(&id, kind::BUDGET), sibling_id(&id, kind::SCHEDULE));
            let production = Production {
                title: new.title,
                status: "DEVELOPMENT".into(),
                genre: new.genre,
                currency: new.currency.clone(),
                budget_id: Some(budget_id.clone()),
                schedule_id: Some(schedule_id.clone()),
            };
            let mut changes = vec![s.put(&id, Body::Production(production))];
            changes.push(s.put(&budget_id, Body::Budget(Budget { production_id: id.clone(), currency: new.currency, lines: new.lines })));
            changes.push(s.put(
                &schedule_id,
                Body::Schedule(Schedule { production_id: id.clone(), start_date: new.start_date, launch_date: new.launch_date }),
            ));
            changes.push(s.project(&id)?);
            Ok((id, changes))
        })
    }

    pub fn update_production(&self, id: &str, title: Option<String>, status: Option<String>) -> Result<Vec<Change>, StudioError> {
        if let Some(status) = &status {
            check_one_of("status", status, PRODUCTION_STATUSES)?;
        }
        if title.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("title", "must not be empty"));
        }
        self.write(|s| {
            let Body::Production(mut p) = s.live(kind::PRODUCTION, id)?.clone() else { unreachable!() };
            p.title = title.unwrap_or(p.title);
            p.status = status.unwrap_or(p.status);
            Ok(vec![s.put(id, Body::Production(p))])
        })
    }

    /// Deletes a production with its budget, schedule and projection. Talents and payments
    /// referring to it stay: they are records of what happened.
    pub fn delete_production(&self, id: &str) -> Result<Vec<Change>, StudioError> {
        self.write(|s| {
            s.live(kind::PRODUCTION, id)?;
            let mut changes = Vec::new();
            for kind in [kind::CASH_FLOW, kind::SCHEDULE, kind::BUDGET] {
                changes.extend(s.delete(kind, &sibling_id(id, kind)));
            }
            changes.extend(s.delete(kind::PRODUCTION, id));
            Ok(changes)
        })
    }

    /// Moves a production's dates; its cash-flow projection moves in the same step.
    pub fn reschedule(&self, schedule_id: &str, start_date: Option<i32>, launch_date: Option<i32>) -> Result<Vec<Change>, StudioError> {
        self.write(|s| {
            let Body::Schedule(mut sched) = s.live(kind::SCHEDULE, schedule_id)?.clone() else { unreachable!() };
            sched.start_date = start_date.unwrap_or(sched.start_date);
            sched.launch_date = launch_date.unwrap_or(sched.launch_date);
            if sched.launch_date < sched.start_date {
                return Err(invalid("launch_date", "must not be before start_date"));
            }
            let production_id = sched.production_id.clone();
            Ok(vec![s.put(schedule_id, Body::Schedule(sched)), s.project(&production_id)?])
        })
    }

    /// Sets (or adds) one budget line; the projection follows.
    pub fn set_budget_line(&self, budget_id: &str, category: &str, amount: i64) -> Result<Vec<Change>, StudioError> {
        check_one_of("category", category, BUDGET_CATEGORIES)?;
        if amount < 0 {
            return Err(invalid("amount", format!("{amount} is negative")));
        }
        self.write(|s| {
            let Body::Budget(mut budget) = s.live(kind::BUDGET, budget_id)?.clone() else { unreachable!() };
            match budget.lines.iter_mut().find(|l| l.category == category) {
                Some(line) => line.amount = amount,
                None => budget.lines.push(BudgetLine { category: category.to_string(), amount }),
            }
            let production_id = budget.production_id.clone();
            Ok(vec![s.put(budget_id, Body::Budget(budget)), s.project(&production_id)?])
        })
    }

    pub fn create_talent(&self, name: &str, role: &str) -> Result<(String, Vec<Change>), StudioError> {
        if name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        check_one_of("role", role, TALENT_ROLES)?;
        self.write(|s| {
            let id = s.new_id(kind::TALENT);
            let change = s.put(&id, Body::Talent(Talent { name: name.to_string(), role: role.to_string(), deals: Vec::new() }));
            Ok((id, vec![change]))
        })
    }

    /// Attaches a talent to a production (or changes the fee of an existing deal).
    pub fn set_deal(&self, talent_id: &str, production_id: &str, fee: i64) -> Result<Vec<Change>, StudioError> {
        if fee < 0 {
            return Err(invalid("fee", format!("{fee} is negative")));
        }
        self.write(|s| {
            let Body::Production(p) = s.live(kind::PRODUCTION, production_id)? else { unreachable!() };
            let currency = p.currency.clone();
            let Body::Talent(mut t) = s.live(kind::TALENT, talent_id)?.clone() else { unreachable!() };
            match t.deals.iter_mut().find(|d| d.production_id == production_id) {
                Some(deal) => deal.fee = fee,
                None => t.deals.push(Deal { production_id: production_id.to_string(), fee, currency }),
            }
            Ok(vec![s.put(talent_id, Body::Talent(t))])
        })
    }

    pub fn delete_talent(&self, id: &str) -> Result<Vec<Change>, StudioError> {
        self.write(|s| {
            s.live(kind::TALENT, id)?;
            Ok(s.delete(kind::TALENT, id).into_iter().collect())
        })
    }

    /// A pending payment to a talent against a production, in the production's currency.
    pub fn create_payment(
        &self,
        production_id: &str,
        talent_id: &str,
        amount: i64,
        due_date: i32,
    ) -> Result<(String, Vec<Change>), StudioError> {
        if amount <= 0 {
            return Err(invalid("amount", format!("{amount} must be positive")));
        }
        self.write(|s| {
            let Body::Production(p) = s.live(kind::PRODUCTION, production_id)? else { unreachable!() };
            let currency = p.currency.clone();
            s.live(kind::TALENT, talent_id)?;
            let id = s.new_id(kind::PAYMENT);
            let payment = Payment {
                production_id: production_id.into(),
                talent_id: talent_id.into(),
                amount,
                currency,
                status: "PENDING".into(),
                due_date,
            };
            let change = s.put(&id, Body::Payment(payment));
            Ok((id, vec![change]))
        })
    }

    pub fn set_payment_status(&self, id: &str, status: &str) -> Result<Vec<Change>, StudioError> {
        check_one_of("status", status, PAYMENT_STATUSES)?;
        self.write(|s| {
            let Body::Payment(mut p) = s.live(kind::PAYMENT, id)?.clone() else { unreachable!() };
            p.status = status.to_string();
            Ok(vec![s.put(id, Body::Payment(p))])
        })
    }

    pub fn delete_payment(&self, id: &str) -> Result<Vec<Change>, StudioError> {
        self.write(|s| {
            s.live(kind::PAYMENT, id)?;
            Ok(s.delete(kind::PAYMENT, id).into_iter().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production(store: &Store) -> String {
        let new = NewProduction {
            title: "Night Ledger".into(),
            genre: "thriller".into(),
            currency: "USD".into(),
            start_date: parse_date("2027-01-10").unwrap(),
            launch_date: parse_date("2027-06-01").unwrap(),
            lines: vec![BudgetLine { category: "PRODUCTION".into(), amount: 10_000 }],
        };
        store.create_production(new).unwrap().0
    }

    #[test]
    fn create_makes_four_entities_at_version_one() {
        let store = Store::new();
        let (id, changes) = store
            .create_production(NewProduction {
                title: "A".into(),
                genre: "g".into(),
                currency: "EUR".into(),
                start_date: 0,
                launch_date: 40,
                lines: vec![],
            })
            .unwrap();
        assert_eq!(id, "prod-000001");
        let kinds: Vec<_> = changes.iter().map(|c| (c.entity, c.id.as_str(), c.change_type, c.version)).collect();
        assert_eq!(
            kinds,
            [
                (kind::PRODUCTION, "prod-000001", ChangeType::Create, 1),
                (kind::BUDGET, "bud-000001", ChangeType::Create, 1),
                (kind::SCHEDULE, "sch-000001", ChangeType::Create, 1),
                (kind::CASH_FLOW, "cf-000001", ChangeType::Create, 1),
            ]
        );
    }

    #[test]
    fn launch_change_bumps_schedule_and_cash_flow() {
        let store = Store::new();
        let id = production(&store);
        let before = store.batch_get(kind::CASH_FLOW, &["cf-000001".into()]);
        let changes = store.reschedule("sch-000001", None, Some(parse_date("2027-12-01").unwrap())).unwrap();
        assert_eq!(changes.iter().map(|c| (c.entity, c.version)).collect::<Vec<_>>(), [(kind::SCHEDULE, 2), (kind::CASH_FLOW, 2)]);
        let after = store.batch_get(kind::CASH_FLOW, &["cf-000001".into()]);
        assert_ne!(before.found[0].2, after.found[0].2);
        assert_eq!(sibling_id(&id, kind::CASH_FLOW), "cf-000001");
    }

    #[test]
    fn delete_keeps_a_versioned_tombstone_and_recreate_continues() {
        let store = Store::new();
        let id = production(&store);
        store.update_production(&id, Some("B".into()), None).unwrap();
        let changes = store.delete_production(&id).unwrap();
        assert!(changes.iter().all(|c| c.change_type == ChangeType::Delete));
        let read = store.batch_get(kind::PRODUCTION, &[id.clone(), "prod-999999".into()]);
        assert_eq!(read.deleted, vec![(id.clone(), 3)]);
        assert_eq!(read.missing, vec!["prod-999999".to_string()]);
        assert!(matches!(store.update_production(&id, None, None), Err(StudioError::NotFound { .. })));
        let mut s = store.state.write().unwrap();
        let change = s.put(
            &id,
            Body::Production(Production {
                title: "C".into(),
                status: "DEVELOPMENT".into(),
                genre: "".into(),
                currency: "USD".into(),
                budget_id: None,
                schedule_id: None,
            }),
        );
        assert_eq!((change.change_type, change.version), (ChangeType::Create, 4));
    }

    #[test]
    fn invalid_input_is_rejected_without_side_effects() {
        let store = Store::new();
        let id = production(&store);
        assert!(matches!(store.update_production(&id, None, Some("WRAPPED".into())), Err(StudioError::Invalid { field: "status", .. })));
        assert!(matches!(store.reschedule("sch-000001", Some(parse_date("2030-01-01").unwrap()), None), Err(StudioError::Invalid { .. })));
        assert!(matches!(store.set_budget_line("bud-000001", "CATERING", 1), Err(StudioError::Invalid { .. })));
        let read = store.batch_get(kind::SCHEDULE, &["sch-000001".into()]);
        assert_eq!(read.found[0].1, 1, "a rejected mutation must not bump the version");
    }

    #[test]
    fn payments_and_deals_reference_live_entities() {
        let store = Store::new();
        let pid = production(&store);
        let (tid, _) = store.create_talent("Ada Vance", "DIRECTOR").unwrap();
        store.set_deal(&tid, &pid, 500_000).unwrap();
        let (pay, _) = store.create_payment(&pid, &tid, 1000, 0).unwrap();
        assert_eq!(store.set_payment_status(&pay, "PAID").unwrap()[0].version, 2);
        assert!(matches!(store.create_payment("prod-404", &tid, 1, 0), Err(StudioError::NotFound { .. })));
        assert_eq!(store.list_ids(kind::PAYMENT, None, 10), vec![pay]);
    }
}
