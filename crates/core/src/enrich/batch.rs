//! Coalescing: every event of one (entity, id) in a batch becomes one unit of work — one fetch
//! and one output record — because the fetch returns the current state, which already reflects
//! all of them. Every event's uuid stays attached so each remains traceable.

use crate::event::{ChangeEvent, EntityName};
use std::collections::HashMap;
use uuid::Uuid;

/// One decoded input event and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub event: ChangeEvent,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// 0 for the input topics; n for the n-th round through the retry topic.
    pub attempt: u32,
    /// Uuids folded into this event before it was parked on the retry topic.
    pub carried_uuids: Vec<Uuid>,
}

/// All events of one (entity, id) in a batch.
#[derive(Debug, Clone)]
pub struct Work {
    pub entity: EntityName,
    pub id: String,
    /// The event with the latest timestamp (ties: the later one in the batch).
    pub newest: ChangeEvent,
    /// Every event uuid folded into this work, in arrival order, without repeats.
    pub uuids: Vec<Uuid>,
    /// Source timestamps of the folded events (for freshness).
    pub event_ts: Vec<i64>,
    /// The highest retry round among the folded events.
    pub attempt: u32,
}

/// Groups `items` by (entity, id), keeping the order in which keys first appear.
pub fn coalesce(items: &[Incoming]) -> Vec<Work> {
    let mut index: HashMap<(EntityName, &str), usize> = HashMap::new();
    let mut out: Vec<Work> = Vec::new();
    for item in items {
        let e = &item.event;
        let slot = *index.entry((e.entity, e.id.as_str())).or_insert_with(|| {
            out.push(Work { entity: e.entity, id: e.id.clone(), newest: e.clone(), uuids: Vec::new(), event_ts: Vec::new(), attempt: 0 });
            out.len() - 1
        });
        let work = &mut out[slot];
        if e.ts >= work.newest.ts {
            work.newest = e.clone();
        }
        for uuid in item.carried_uuids.iter().chain(std::iter::once(&e.uuid)) {
            if !work.uuids.contains(uuid) {
                work.uuids.push(*uuid);
            }
        }
        work.event_ts.push(e.ts);
        work.attempt = work.attempt.max(item.attempt);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeType;

    fn incoming(entity: EntityName, id: &str, ts: i64, t: ChangeType) -> Incoming {
        Incoming {
            event: ChangeEvent::new(t, entity, id, ts),
            topic: "t".into(),
            partition: 0,
            offset: ts,
            attempt: 0,
            carried_uuids: vec![],
        }
    }

    #[test]
    fn one_work_per_key_with_every_uuid_and_the_newest_event() {
        let items = vec![
            incoming(crate::catalogue::example::BUDGET, "b1", 10, ChangeType::Create),
            incoming(crate::catalogue::example::CASH_FLOW, "b1", 11, ChangeType::Update),
            incoming(crate::catalogue::example::BUDGET, "b1", 30, ChangeType::Delete),
            incoming(crate::catalogue::example::BUDGET, "b1", 20, ChangeType::Update),
            incoming(crate::catalogue::example::BUDGET, "b2", 5, ChangeType::Update),
        ];
        let work = coalesce(&items);
        assert_eq!(
            work.iter().map(|w| (w.entity, w.id.as_str())).collect::<Vec<_>>(),
            [
                (crate::catalogue::example::BUDGET, "b1"),
                (crate::catalogue::example::CASH_FLOW, "b1"),
                (crate::catalogue::example::BUDGET, "b2")
            ]
        );
        let b1 = &work[0];
        assert_eq!(b1.uuids, vec![items[0].event.uuid, items[2].event.uuid, items[3].event.uuid]);
        assert_eq!((b1.newest.ts, b1.newest.change_type), (30, ChangeType::Delete), "newest by source time, not arrival");
        assert_eq!(b1.event_ts, vec![10, 30, 20]);
    }

    #[test]
    fn duplicates_and_carried_uuids_are_listed_once() {
        let mut a = incoming(crate::catalogue::example::PAYMENT, "p", 1, ChangeType::Update);
        let carried = Uuid::new_v4();
        a.carried_uuids = vec![carried, a.event.uuid];
        a.attempt = 2;
        let b = a.clone();
        let work = coalesce(&[a.clone(), b]);
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].uuids, vec![carried, a.event.uuid]);
        assert_eq!(work[0].attempt, 2);
    }
}
