//! The comparison of one entity's keys on two sides (live, shadow), whatever holds them: enriched
//! topics, SQL rows or search documents, all seen as JSON objects with a source version.
//!
//! Timing is tolerated, never hidden: a key is *compared* only when both sides hold the same
//! source version (then the business fields must be equal). When one side holds a newer version,
//! or holds a key the other lacks, the key is *pending* while the newer record is younger than the
//! grace period, and counts as *stale* or *missing* on the lagging side after it.

use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one side holds for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Source version; `None` for a tombstone of an id the source never had.
    pub version: Option<i64>,
    /// The fields; `None` when the entity is deleted on this side.
    pub value: Option<Map<String, Json>>,
    /// When this side got it (epoch ms): the record's Kafka timestamp.
    pub at_ms: i64,
}

/// One side's keys of one entity.
pub type Side = HashMap<String, Observed>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Equal,
    Different,
    Pending,
    MissingLive,
    MissingShadow,
    StaleLive,
    StaleShadow,
}

impl State {
    pub const ALL: [State; 7] =
        [State::Equal, State::Different, State::Pending, State::MissingLive, State::MissingShadow, State::StaleLive, State::StaleShadow];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Equal => "equal",
            State::Different => "different",
            State::Pending => "pending",
            State::MissingLive => "missing_live",
            State::MissingShadow => "missing_shadow",
            State::StaleLive => "stale_live",
            State::StaleShadow => "stale_shadow",
        }
    }

    /// A state that fails the comparison (exit status 1).
    pub fn is_failure(self) -> bool {
        !matches!(self, State::Equal | State::Pending)
    }
}

/// One field that differs at the same version. `delta` (shadow − live) when both are numbers:
/// money is in minor units, so a wrong amount reads as "by how much".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub live: Json,
    pub shadow: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub id: String,
    pub state: State,
    pub live_version: Option<i64>,
    pub shadow_version: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
}

/// The outcome for one entity on one store.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// Keys per state.
    pub keys: BTreeMap<State, usize>,
    /// Up to `Rules::samples` keys that are neither equal nor pending, ordered by id.
    pub samples: Vec<Sample>,
}

impl Comparison {
    pub fn count(&self, state: State) -> usize {
        self.keys.get(&state).copied().unwrap_or(0)
    }

    /// Keys held at the same version on both sides.
    pub fn compared(&self) -> usize {
        self.count(State::Equal) + self.count(State::Different)
    }

    pub fn failures(&self) -> usize {
        self.keys.iter().filter(|(s, _)| s.is_failure()).map(|(_, n)| n).sum()
    }
}

pub struct Rules<'a> {
    pub now_ms: i64,
    pub grace_ms: i64,
    /// Fields not compared: configured provenance, and fields only one side's schema has.
    pub ignore: &'a BTreeSet<String>,
    pub samples: usize,
}

pub fn compare(live: &Side, shadow: &Side, rules: &Rules) -> Comparison {
    let mut out = Comparison::default();
    let mut ids: Vec<&String> = live.keys().chain(shadow.keys().filter(|k| !live.contains_key(*k))).collect();
    ids.sort();
    for id in ids {
        let (l, s) = (live.get(id), shadow.get(id));
        let (state, fields) = classify(l, s, rules);
        *out.keys.entry(state).or_default() += 1;
        if state.is_failure() && out.samples.len() < rules.samples {
            let version = |o: Option<&Observed>| o.and_then(|o| o.version);
            out.samples.push(Sample { id: id.clone(), state, live_version: version(l), shadow_version: version(s), fields });
        }
    }
    out
}

fn classify(live: Option<&Observed>, shadow: Option<&Observed>, rules: &Rules) -> (State, Vec<FieldDiff>) {
    let young = |o: &Observed| rules.now_ms - o.at_ms < rules.grace_ms;
    match (live, shadow) {
        // A deletion on one side and nothing on the other say the same: no entity (compaction
        // removes tombstones in time, and may have on one side only).
        (Some(o), None) | (None, Some(o)) if o.value.is_none() => (State::Equal, Vec::new()),
        (Some(l), None) => (if young(l) { State::Pending } else { State::MissingShadow }, Vec::new()),
        (None, Some(s)) => (if young(s) { State::Pending } else { State::MissingLive }, Vec::new()),
        (None, None) => unreachable!("an id comes from one of the sides"),
        (Some(l), Some(s)) if l.version == s.version => {
            let fields = diff(l.value.as_ref(), s.value.as_ref(), rules.ignore);
            (if fields.is_empty() { State::Equal } else { State::Different }, fields)
        }
        (Some(l), Some(s)) => {
            // Versions differ: the side holding the older one lags (a tombstone without a
            // version is older than any version).
            let live_newer = l.version > s.version;
            if young(if live_newer { l } else { s }) {
                (State::Pending, Vec::new())
            } else if live_newer {
                (State::StaleShadow, Vec::new())
            } else {
                (State::StaleLive, Vec::new())
            }
        }
    }
}

/// Field differences at the same version; a deletion on one side only is reported as the
/// pseudo-field `(deleted)`.
fn diff(live: Option<&Map<String, Json>>, shadow: Option<&Map<String, Json>>, ignore: &BTreeSet<String>) -> Vec<FieldDiff> {
    match (live, shadow) {
        (None, None) => Vec::new(),
        (Some(_), None) | (None, Some(_)) => vec![FieldDiff {
            field: "(deleted)".into(),
            live: Json::Bool(live.is_none()),
            shadow: Json::Bool(shadow.is_none()),
            delta: None,
        }],
        (Some(l), Some(s)) => {
            let mut out = Vec::new();
            let names: BTreeSet<&String> = l.keys().chain(s.keys()).filter(|n| !ignore.contains(*n)).collect();
            for name in names {
                let (lv, sv) = (l.get(name).unwrap_or(&Json::Null), s.get(name).unwrap_or(&Json::Null));
                nested(name, lv, sv, &mut out);
            }
            out
        }
    }
}

/// Descends into nested records so the report names `address.city`, not `address`.
fn nested(path: &str, live: &Json, shadow: &Json, out: &mut Vec<FieldDiff>) {
    if live == shadow {
        return;
    }
    if let (Json::Object(l), Json::Object(s)) = (live, shadow) {
        let names: BTreeSet<&String> = l.keys().chain(s.keys()).collect();
        for name in names {
            nested(&format!("{path}.{name}"), l.get(name).unwrap_or(&Json::Null), s.get(name).unwrap_or(&Json::Null), out);
        }
        return;
    }
    let delta = match (live.as_i64(), shadow.as_i64()) {
        (Some(l), Some(s)) => Some(Json::from(s.saturating_sub(l))),
        _ => match (live.as_f64(), shadow.as_f64()) {
            (Some(l), Some(s)) => Some(Json::from(s - l)),
            _ => None,
        },
    };
    out.push(FieldDiff { field: path.to_string(), live: live.clone(), shadow: shadow.clone(), delta });
}

/// The JSON kind of a value, to tell a field whose type changed from one whose value did.
fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// How the two sides' records differ in shape, found from the values themselves (so the same
/// check serves topics, SQL rows and documents).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Shape {
    /// Fields only live records have (e.g. the shadow runs an older schema).
    pub only_live: Vec<String>,
    /// Fields only shadow records have (e.g. the shadow tries a new field).
    pub only_shadow: Vec<String>,
    /// Fields both have, with different kinds of value (e.g. `amount`: number vs string).
    pub retyped: Vec<String>,
}

impl Shape {
    pub fn is_same(&self) -> bool {
        self.only_live.is_empty() && self.only_shadow.is_empty() && self.retyped.is_empty()
    }

    /// Every field the per-key comparison must leave out.
    pub fn excluded(&self) -> impl Iterator<Item = &String> {
        self.only_live.iter().chain(&self.only_shadow).chain(&self.retyped)
    }
}

pub fn shape(live: &Side, shadow: &Side, ignore: &BTreeSet<String>) -> Shape {
    let kinds = |side: &Side| {
        let mut fields: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        for value in side.values().filter_map(|o| o.value.as_ref()) {
            for (name, v) in value.iter().filter(|(n, _)| !ignore.contains(*n)) {
                let kinds = fields.entry(name.clone()).or_default();
                if !v.is_null() {
                    kinds.insert(kind(v));
                }
            }
        }
        fields
    };
    let (l, s) = (kinds(live), kinds(shadow));
    let mut out = Shape::default();
    if l.is_empty() || s.is_empty() {
        // Nothing to learn the other side's shape from (no live values yet).
        return out;
    }
    for (name, lk) in &l {
        match s.get(name) {
            None => out.only_live.push(name.clone()),
            Some(sk) if !lk.is_empty() && !sk.is_empty() && lk.is_disjoint(sk) => out.retyped.push(name.clone()),
            Some(_) => {}
        }
    }
    out.only_shadow = s.keys().filter(|n| !l.contains_key(*n)).cloned().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(version: i64, value: Json, at_ms: i64) -> Observed {
        Observed { version: Some(version), value: value.as_object().cloned(), at_ms }
    }

    fn side(items: &[(&str, Observed)]) -> Side {
        items.iter().map(|(k, o)| (k.to_string(), o.clone())).collect()
    }

    #[test]
    fn keys_are_compared_at_the_same_version_and_timing_is_graced() {
        let ignore = BTreeSet::from(["_meta".to_string()]);
        let rules = Rules { now_ms: 100_000, grace_ms: 30_000, ignore: &ignore, samples: 10 };
        let pay = |amount: i64, uuid: &str| json!({"id": "x", "amount": amount, "_meta": {"event_uuid": uuid}});
        let live = side(&[
            ("equal", obs(3, pay(100, "a"), 0)),
            ("money", obs(3, pay(100, "a"), 0)),
            ("young-newer-live", obs(5, pay(1, "a"), 90_000)),
            ("old-newer-live", obs(5, pay(1, "a"), 10_000)),
            ("only-live-old", obs(1, pay(1, "a"), 0)),
            ("only-live-young", obs(1, pay(1, "a"), 99_000)),
            ("deleted-live", Observed { version: Some(4), value: None, at_ms: 0 }),
            ("tombstone-vs-nothing", Observed { version: Some(9), value: None, at_ms: 0 }),
        ]);
        let shadow = side(&[
            ("equal", obs(3, pay(100, "b"), 0)),
            ("money", obs(3, pay(150, "b"), 0)),
            ("young-newer-live", obs(4, pay(1, "b"), 0)),
            ("old-newer-live", obs(4, pay(1, "b"), 0)),
            ("only-shadow-old", obs(2, pay(1, "b"), 0)),
            ("deleted-live", obs(4, pay(1, "b"), 0)),
        ]);
        let c = compare(&live, &shadow, &rules);
        let want = BTreeMap::from([
            (State::Equal, 2),
            (State::Different, 2),
            (State::Pending, 2),
            (State::MissingLive, 1),
            (State::MissingShadow, 1),
            (State::StaleShadow, 1),
        ]);
        assert_eq!(c.keys, want);
        assert_eq!((c.compared(), c.failures()), (4, 5));
        let money = c.samples.iter().find(|s| s.id == "money").unwrap();
        assert_eq!(money.fields, vec![FieldDiff { field: "amount".into(), live: json!(100), shadow: json!(150), delta: Some(json!(50)) }]);
        let deleted = c.samples.iter().find(|s| s.id == "deleted-live").unwrap();
        assert_eq!(deleted.fields[0].field, "(deleted)");
        let few = compare(&live, &shadow, &Rules { samples: 2, ..rules });
        assert_eq!(few.samples.len(), 2, "samples are bounded");
    }

    #[test]
    fn nested_fields_are_named_by_path() {
        let (l, s) = (json!({"a": {"b": 1, "c": "x"}}), json!({"a": {"b": 1, "c": "y"}}));
        let d = diff(l.as_object(), s.as_object(), &BTreeSet::new());
        assert_eq!(d, vec![FieldDiff { field: "a.c".into(), live: json!("x"), shadow: json!("y"), delta: None }]);
    }

    #[test]
    fn shapes_name_added_dropped_and_retyped_fields() {
        let ignore = BTreeSet::from(["_meta".to_string()]);
        let live = side(&[("1", obs(1, json!({"id": "1", "amount": 5, "old": true, "note": null, "_meta": 1}), 0))]);
        let shadow = side(&[("1", obs(1, json!({"id": "1", "amount": "5", "new": 1, "note": "n"}), 0))]);
        let s = shape(&live, &shadow, &ignore);
        assert_eq!(s.only_live, vec!["old"]);
        assert_eq!(s.only_shadow, vec!["new"]);
        assert_eq!(s.retyped, vec!["amount"], "a null says nothing about a field's type");
        assert!(shape(&live, &live, &ignore).is_same());
        assert!(shape(&live, &Side::new(), &ignore).is_same(), "an empty side has no shape to differ");
    }
}
