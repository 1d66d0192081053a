//! The shadow validator: compares a live pipeline with a shadow of it, per key, on the enriched
//! topics and (when configured) the SQL rows and search documents, and says whether the shadow
//! can be trusted with the live traffic.
//!
//! A shadow is configured, never coded: an enricher with its own `enricher.group_id` and
//! `enricher.output_topic_prefix` (the live pipeline's offsets and topics are untouched), and
//! optionally sinks reading its topics into a database and index prefix of their own. `[shadow]`
//! tells the validator where both sides are ([`crate::config::ShadowConfig`]).
//!
//! Contract of a report:
//! - Keys are compared only at the same source version ([`compare`]); timing differences are
//!   pending within `shadow.grace`, missing or stale after it.
//! - Differences of shape are reported once per entity, not once per key: an entity enriched on
//!   one side only, topics of entities the catalogue does not know, records one side's schema
//!   cannot read, and fields only one side has or whose type differs ([`compare::Shape`]); such
//!   fields are left out of the per-key comparison.
//! - It fails (exit status 1, [`Report::ok`]) on any different, missing or stale key, any entity
//!   on one side only, unreadable records or a field whose type differs. Added or dropped fields
//!   alone do not fail it: trying a new field is what a shadow is for.

pub mod compare;
pub mod role;
mod stored;
mod topics;

use crate::catalogue::Catalogue;
use crate::config::{Config, ConfigError, SearchSinkConfig, ShadowConfig};
use crate::event::EntityName;
use compare::{Comparison, Rules, Shape, Side, State};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use topics::TopicSide;

#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry unavailable: {0}")]
    Registry(String),
    #[error("{store}: {message}")]
    Store { store: &'static str, message: String },
    #[error("reading the enriched topics took too long: {0}")]
    Slow(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Where one store of an entity stands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreReport {
    #[serde(skip_serializing_if = "Shape::is_same")]
    pub shape: Shape,
    #[serde(flatten)]
    pub result: Comparison,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EntityReport {
    /// `topics`, `sql`, `search`.
    pub stores: BTreeMap<&'static str, StoreReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub live_prefix: String,
    pub shadow_prefix: String,
    pub grace_ms: i64,
    /// Differences that concern a whole entity or topic, one sentence each.
    pub mismatches: Vec<String>,
    pub entities: BTreeMap<EntityName, EntityReport>,
}

impl Report {
    /// Keys per state over every entity of `store`.
    pub fn totals(&self, store: &str) -> BTreeMap<State, usize> {
        let mut out = BTreeMap::new();
        for r in self.entities.values().filter_map(|e| e.stores.get(store)) {
            for (state, n) in &r.result.keys {
                *out.entry(*state).or_default() += n;
            }
        }
        out
    }

    /// Equal keys among those compared (same version on both sides); `None` before any.
    pub fn match_ratio(&self, store: &str) -> Option<f64> {
        let t = self.totals(store);
        let (equal, different) = (t.get(&State::Equal).copied().unwrap_or(0), t.get(&State::Different).copied().unwrap_or(0));
        (equal + different > 0).then(|| equal as f64 / (equal + different) as f64)
    }

    pub fn stores(&self) -> BTreeSet<&'static str> {
        self.entities.values().flat_map(|e| e.stores.keys().copied()).collect()
    }

    /// Whether the shadow matches: see the module doc.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
            && self.entities.values().flat_map(|e| e.stores.values()).all(|s| s.result.failures() == 0 && s.shape.retyped.is_empty())
    }
}

/// Both sides, followed across comparisons (the role keeps one and compares every interval).
pub struct Validator {
    cfg: ShadowConfig,
    catalogue: Arc<Catalogue>,
    live: TopicSide,
    shadow: TopicSide,
    sql: Option<(sqlx::PgPool, sqlx::PgPool)>,
    search: Option<(SearchSinkConfig, String)>,
}

impl Validator {
    pub fn new(config: &Config) -> Result<Self, ShadowError> {
        let cfg = config.shadow.clone();
        cfg.validate_sides(config.shadow_live_prefix(), &config.sinks.search.index_prefix)?;
        let catalogue = config.entities().clone();
        let side = |prefix: &str| {
            let registry = crate::enrich::registry_client(&config.registry).map_err(|e| ShadowError::Registry(e.to_string()))?;
            TopicSide::new(&config.kafka, prefix, registry, catalogue.clone())
        };
        let (live, shadow) = (side(config.shadow_live_prefix())?, side(&cfg.shadow_prefix)?);
        let sql = match &cfg.sql_url {
            None => None,
            Some(_) if config.sinks.sql.is_sqlite() => {
                return Err(ConfigError::Invalid {
                    key: "shadow.sql_url".into(),
                    message: "the SQL comparison reads PostgreSQL, and sinks.sql.database_url is SQLite; unset shadow.sql_url".into(),
                }
                .into());
            }
            Some(url) => {
                let pool = |key: &str, url: &str| {
                    sqlx::PgPool::connect_lazy(url)
                        .map_err(|e| ConfigError::Invalid { key: key.into(), message: format!("not a PostgreSQL URL: {e}") })
                };
                Some((pool("sinks.sql.database_url", config.sinks.sql.database_url.expose())?, pool("shadow.sql_url", url.expose())?))
            }
        };
        let search = cfg.index_prefix.clone().map(|p| (config.sinks.search.clone(), p));
        Ok(Self { cfg, catalogue, live, shadow, sql, search })
    }

    /// Reads both sides up to now and compares them.
    pub async fn compare(&mut self) -> Result<Report, ShadowError> {
        self.live.catch_up().await?;
        self.shadow.catch_up().await?;
        let now_ms = crate::time::now_millis();
        let mut report = Report {
            live_prefix: self.live.prefix().to_string(),
            shadow_prefix: self.shadow.prefix().to_string(),
            grace_ms: self.cfg.grace.as_millis() as i64,
            mismatches: self.side_mismatches(),
            entities: BTreeMap::new(),
        };
        let compared: Vec<EntityName> = self
            .catalogue
            .names()
            .into_iter()
            .filter(|e| self.live.entities.contains(e) && self.shadow.entities.contains(e))
            .filter(|e| !self.live.unreadable.contains_key(e) && !self.shadow.unreadable.contains_key(e))
            .collect();
        let ignore: BTreeSet<String> = self.cfg.ignore_fields.iter().cloned().collect();
        let empty = Side::new();
        let mut add =
            |store: &'static str, live: &BTreeMap<EntityName, Side>, shadow: &BTreeMap<EntityName, Side>, ignore: &BTreeSet<String>| {
                for e in &compared {
                    let (l, s) = (live.get(e).unwrap_or(&empty), shadow.get(e).unwrap_or(&empty));
                    let shape = compare::shape(l, s, ignore);
                    let mut skip = ignore.clone();
                    skip.extend(shape.excluded().cloned());
                    let rules = Rules { now_ms, grace_ms: report.grace_ms, ignore: &skip, samples: self.cfg.samples };
                    let result = compare::compare(l, s, &rules);
                    report.entities.entry(*e).or_default().stores.insert(store, StoreReport { shape, result });
                }
            };
        add("topics", &self.live.held, &self.shadow.held, &ignore);
        if let Some((live_pool, shadow_pool)) = &self.sql {
            let l = stored::sql_side(live_pool, &self.catalogue, &self.live.held).await?;
            let s = stored::sql_side(shadow_pool, &self.catalogue, &self.shadow.held).await?;
            let mut sql_ignore = ignore.clone();
            sql_ignore.extend(stored::SQL_SYSTEM_COLUMNS.map(String::from));
            add("sql", &l, &s, &sql_ignore);
        }
        if let Some((search, shadow_prefix)) = &self.search {
            let l = stored::search_side(search, &search.index_prefix, &self.catalogue, &self.live.held).await?;
            let s = stored::search_side(search, shadow_prefix, &self.catalogue, &self.shadow.held).await?;
            add("search", &l, &s, &ignore);
        }
        Ok(report)
    }

    /// Entity-level differences, one sentence each.
    fn side_mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (live, shadow) = (&self.live, &self.shadow);
        for e in live.entities.symmetric_difference(&shadow.entities) {
            let (has, lacks) = if live.entities.contains(e) { (live, "shadow") } else { (shadow, "live") };
            out.push(format!(
                "entity `{e}` is enriched on one side only: `{}{e}.enriched` exists, the {lacks} pipeline has no such topic \
                 (different entity sets; its keys are not compared)",
                has.prefix()
            ));
        }
        for (name, side) in [("live", live), ("shadow", shadow)] {
            for topic in &side.foreign {
                out.push(format!("{name} topic `{topic}` names an entity this catalogue does not declare: not compared"));
            }
            for (e, reason) in &side.unreadable {
                out.push(format!("entity `{e}`: the {name} records cannot be read with this catalogue's schema ({reason})"));
            }
            for (e, n) in &side.undecodable {
                out.push(format!("entity `{e}`: {n} {name} records do not decode and are not compared"));
            }
        }
        out
    }
}
