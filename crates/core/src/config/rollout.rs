//! `[enricher.rollout]`: percentage rollout by key. Several enricher pipelines (an old and a new
//! version, each its own consumer group) read the same input topics; each key belongs to
//! exactly one of them, by a stable hash of (entity, id, salt) into basis points 0..10000.
//! A pipeline processes the events of its keys and skips the others (their offsets are stored
//! as processed; `slate_enricher_rollout_skipped_total` counts them).
//!
//! Every pipeline carries the whole table, checked at start: the slices must cover 0..10000
//! with no gap and no overlap. Moving keys (1% → 5%) is a config change applied on restart, in
//! this order so that no key is ever owned by neither: first restart the pipeline that *gains*
//! keys with the new table (for a while both process the moved keys; the sinks' version guards
//! absorb the double outputs), then restart the one that loses them. Events of a moved key
//! published in between are processed by the gaining pipeline.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Basis points: a key's slot is in `0..BASIS_POINTS`.
pub const BASIS_POINTS: u32 = 10_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Mixed into the hash, so a new rollout can pick a different first 1% of keys.
    pub salt: String,
    /// This enricher's pipeline: a key of `slices`.
    pub pipeline: String,
    /// Pipeline → `[from, to)` in basis points; together exactly `0..10000`. An empty slice
    /// (`from == to`) owns no key: a pipeline at 0%.
    pub slices: BTreeMap<String, [u32; 2]>,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

impl RolloutConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.slices.contains_key(&self.pipeline) {
            let names: Vec<&str> = self.slices.keys().map(String::as_str).collect();
            return Err(invalid(
                "enricher.rollout.pipeline",
                format!("`{}` has no slice in enricher.rollout.slices ({})", self.pipeline, names.join(", ")),
            ));
        }
        let mut ranges: Vec<(&String, u32, u32)> = self.slices.iter().map(|(name, [from, to])| (name, *from, *to)).collect();
        ranges.sort_by_key(|(_, from, to)| (*from, *to));
        let mut covered = 0;
        for (name, from, to) in ranges {
            if from > to || to > BASIS_POINTS {
                return Err(invalid(
                    "enricher.rollout.slices",
                    format!("`{name}` = [{from}, {to}] is not a range within 0..{BASIS_POINTS} (write [from, to) with from <= to)"),
                ));
            }
            if from == to {
                // An empty slice: the pipeline owns no key (0%), wherever it sits.
                continue;
            }
            if from > covered {
                return Err(invalid(
                    "enricher.rollout.slices",
                    format!("keys {covered}..{from} belong to no pipeline: a gap before `{name}`"),
                ));
            }
            if from < covered {
                return Err(invalid(
                    "enricher.rollout.slices",
                    format!("`{name}` starts at {from}, inside the slice before it (ends at {covered}): an overlap"),
                ));
            }
            covered = to;
        }
        if covered != BASIS_POINTS {
            return Err(invalid(
                "enricher.rollout.slices",
                format!("keys {covered}..{BASIS_POINTS} belong to no pipeline: the slices must end at {BASIS_POINTS}"),
            ));
        }
        Ok(())
    }

    /// Whether this pipeline owns the key (entity, id).
    pub fn owns(&self, entity: &str, id: &str) -> bool {
        let [from, to] = self.slices[&self.pipeline];
        (from..to).contains(&slot(&self.salt, entity, id))
    }
}

/// The key's slot in `0..BASIS_POINTS`: FNV-1a (64-bit) of `entity \0 id \0 salt`. Fixed
/// forever: every version of every pipeline must agree on it (unit-tested against constants).
pub fn slot(salt: &str, entity: &str, id: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [entity.as_bytes(), b"\0", id.as_bytes(), b"\0", salt.as_bytes()] {
        for byte in part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (hash % u64::from(BASIS_POINTS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(slices: &[(&str, u32, u32)]) -> RolloutConfig {
        RolloutConfig {
            salt: "s".into(),
            pipeline: slices[0].0.into(),
            slices: slices.iter().map(|(n, f, t)| (n.to_string(), [*f, *t])).collect(),
        }
    }

    #[test]
    fn slots_are_stable_and_spread() {
        // Constants (computed independently): a change of the hash would silently move keys
        // between pipelines in a running rollout.
        let fixed = [slot("salt", "payment", "pay-1"), slot("salt", "budget", "b-7"), slot("other", "payment", "pay-1")];
        assert_eq!(fixed, [8315, 1290, 2943], "slot() must never change");
        let in_first_percent = (0..10_000).filter(|i| slot("salt", "payment", &format!("pay-{i}")) < 100).count();
        assert!((50..150).contains(&in_first_percent), "about 1% of keys in the first 100 slots: {in_first_percent}");
    }

    #[test]
    fn tables_with_gaps_or_overlaps_are_refused() {
        assert!(table(&[("v1", 0, 9900), ("v2", 9900, 10_000)]).validate().is_ok());
        let gap = table(&[("v1", 0, 9800), ("v2", 9900, 10_000)]).validate().unwrap_err().to_string();
        assert!(gap.contains("9800..9900 belong to no pipeline"), "{gap}");
        let overlap = table(&[("v1", 0, 9950), ("v2", 9900, 10_000)]).validate().unwrap_err().to_string();
        assert!(overlap.contains("overlap"), "{overlap}");
        let short = table(&[("v1", 0, 5000)]).validate().unwrap_err().to_string();
        assert!(short.contains("5000..10000"), "{short}");
        let mut unknown = table(&[("v1", 0, 10_000)]);
        unknown.pipeline = "v3".into();
        assert!(unknown.validate().unwrap_err().to_string().contains("`v3` has no slice"));
        assert!(table(&[("v1", 0, 10_000)]).owns("payment", "anything"), "one pipeline owns every key");
        let zero = table(&[("v2", 0, 0), ("v1", 0, 10_000)]);
        assert!(zero.validate().is_ok(), "a pipeline at 0% has an empty slice");
        assert!(!zero.owns("payment", "anything"), "an empty slice owns no key");
        let backwards = table(&[("v1", 0, 10_000), ("v2", 10_000, 9_000)]).validate().unwrap_err().to_string();
        assert!(backwards.contains("from <= to"), "{backwards}");
    }
}
