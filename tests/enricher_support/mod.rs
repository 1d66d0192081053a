//! Helpers of the enricher tests: a studio + registry + enricher wired on the test broker, and
//! a convergence check of the enriched topics against the studio's current state.
#![allow(dead_code)]

use crate::common::*;
use apache_avro::Schema;
use apache_avro::types::Value;
use slate::config::Config;
use slate::event::{ChangeEvent, EntityName};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Studio + enricher config sharing the broker, with unique topics and group.
pub fn pipeline_config(registry_url: &str, extra: &[slate::config::Override]) -> Config {
    let mut o = vec![
        ov("registry.url", format!("\"{registry_url}\"")),
        ov("enricher.group_id", format!("\"{}\"", unique("enricher"))),
        ov("enricher.output_topic_prefix", format!("\"{}.\"", unique("out"))),
        ov("enricher.retry_topic", format!("\"{}\"", unique("retry"))),
        ov("enricher.dlq_topic", format!("\"{}\"", unique("dlq"))),
        ov("enricher.topic_partitions", 2),
        ov("enricher.batch_max_wait", "\"20ms\""),
        ov("kafka.consumer.session_timeout", "\"6s\""),
    ];
    o.extend_from_slice(extra);
    let mut cfg = studio_config(&o);
    cfg.enricher.input_topic_prefix = cfg.studio.topic_prefix.clone();
    cfg.enricher.metrics_listen = None;
    cfg
}

/// Sinks that read the enricher's output topics, in groups of their own, dead-lettering beside it.
pub fn sinks_behind_enricher(cfg: &mut Config) {
    cfg.sinks.topic_prefix = cfg.enricher.output_topic_prefix.clone();
    cfg.sinks.group_prefix = format!("{}-", unique("sink"));
    cfg.sinks.dlq_topic = cfg.enricher.dlq_topic.clone();
}

/// Points the sources at a running studio.
pub fn use_studio(cfg: &mut Config, studio: &slate::studio::server::RunningStudio) {
    cfg.sources.graphql_endpoint = format!("http://{}/graphql", studio.http_addr);
    cfg.sources.grpc_endpoint = format!("http://{}", studio.grpc_addr);
}

/// The last output per key on the enriched topics: `Some(version)` for a record, `None` for a
/// tombstone, plus the decoded records for further checks.
pub fn enriched_state(cfg: &Config) -> BTreeMap<(EntityName, String), Option<i64>> {
    let mut state = BTreeMap::new();
    for kind in slate::studio::kind::ALL {
        let schema = slate::catalogue::Catalogue::example(kind).schema.clone();
        for (key, payload, _) in read_all(&cfg.enricher.output_topic(kind), cfg.enricher.topic_partitions) {
            let id = String::from_utf8(key).unwrap();
            let version = payload.map(|p| version_of(&schema, &p));
            state.insert((kind, id), version);
        }
    }
    state
}

/// Decodes a Confluent-framed record and returns its `version` field.
pub fn version_of(schema: &Schema, payload: &[u8]) -> i64 {
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut &payload[5..])
        .expect("valid Avro");
    let Value::Record(fields) = value else { panic!("record expected") };
    match fields.iter().find(|(n, _)| n == "version") {
        Some((_, Value::Long(v))) => *v,
        other => panic!("version field: {other:?}"),
    }
}

/// Keys that had change events, read from the change topics; `studio_metrics` says how many
/// events each topic received.
pub async fn changed_keys(cfg: &Config, studio_metrics: &slate::metrics::Metrics) -> BTreeSet<(EntityName, String)> {
    let (cfg, m) = (cfg.clone(), studio_metrics.clone());
    tokio::task::spawn_blocking(move || changed_keys_blocking(&cfg, &m)).await.expect("reader thread")
}

fn changed_keys_blocking(cfg: &Config, studio_metrics: &slate::metrics::Metrics) -> BTreeSet<(EntityName, String)> {
    let mut keys = BTreeSet::new();
    for kind in slate::studio::kind::ALL {
        let topic = kind.changes_topic(&cfg.studio.topic_prefix);
        let n = studio_metrics.produced_total.get_or_create(&slate::metrics::label("topic", topic.clone())).get() as usize;
        if n == 0 {
            continue;
        }
        for (key, payload) in read_n(&topic, cfg.studio.topic_partitions, n, Duration::from_secs(30)) {
            let e = ChangeEvent::decode_json(&payload.expect("event"), Some(&key), Some(kind)).expect("studio events decode");
            keys.insert((e.entity, e.id));
        }
    }
    keys
}

/// What the enriched topics must end with for `keys`: the studio's current version, or a
/// tombstone for deleted and unknown ids.
pub fn studio_state(studio: &slate::studio::Studio, keys: &BTreeSet<(EntityName, String)>) -> BTreeMap<(EntityName, String), Option<i64>> {
    keys.iter()
        .map(|(kind, id)| {
            let read = studio.store.batch_get(*kind, std::slice::from_ref(id));
            ((*kind, id.clone()), read.found.first().map(|(_, v, _)| *v))
        })
        .collect()
}

/// Waits until, for every changed key, the enriched topics end with the studio's state.
pub async fn wait_converged(cfg: &Config, studio: &slate::studio::Studio, keys: &BTreeSet<(EntityName, String)>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let want = studio_state(studio, keys);
        let cfg2 = cfg.clone();
        let got = tokio::task::spawn_blocking(move || enriched_state(&cfg2)).await.unwrap();
        let diff: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v, got.get(k).cloned())).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        if diff.is_empty() && extra.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "not converged within {within:?}: {} keys differ (sample (key, want, got): {:?}); {} unexpected keys {:?}",
                diff.len(),
                &diff[..diff.len().min(5)],
                extra.len(),
                &extra[..extra.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn counter(metrics: &slate::metrics::Metrics, name: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#') && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the `slate` binary with `args` on `cfg`'s services (broker, registry, sources, enricher
/// topic prefixes, SQL and search sinks, `[shadow]` targets) passed as `SLATE_*` variables;
/// returns (exit code, stdout + stderr).
pub async fn slate_cli(cfg: &Config, args: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", &cfg.kafka.bootstrap_servers)
        .env("SLATE_REGISTRY__URL", &cfg.registry.url)
        .env("SLATE_SOURCES__GRAPHQL_ENDPOINT", &cfg.sources.graphql_endpoint)
        .env("SLATE_SOURCES__GRPC_ENDPOINT", &cfg.sources.grpc_endpoint)
        .env("SLATE_SINKS__SQL__DATABASE_URL", cfg.sinks.sql.database_url.expose())
        .env("SLATE_SINKS__SEARCH__URL", &cfg.sinks.search.url)
        .env("SLATE_SINKS__SEARCH__INDEX_PREFIX", &cfg.sinks.search.index_prefix)
        .env("SLATE_ENRICHER__INPUT_TOPIC_PREFIX", &cfg.enricher.input_topic_prefix)
        .env("SLATE_ENRICHER__OUTPUT_TOPIC_PREFIX", &cfg.enricher.output_topic_prefix);
    if let Some(url) = &cfg.shadow.sql_url {
        cmd.env("SLATE_SHADOW__SQL_URL", url.expose());
    }
    if let Some(prefix) = &cfg.shadow.index_prefix {
        cmd.env("SLATE_SHADOW__INDEX_PREFIX", prefix);
    }
    cmd.args(["--log", "warn"]).args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("slate {args:?} finishes"))
        .expect("slate runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Runs `slate verify` (the binary) on `cfg`'s services; returns (exit code, stdout + stderr).
pub async fn verify_cli(cfg: &Config, extra: &[&str]) -> (i32, String) {
    slate_cli(cfg, &[&["verify"], extra].concat()).await
}

pub async fn until_clean(cfg: &Config, sinks: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (code, out) = verify_cli(cfg, sinks).await;
        if code == 0 {
            assert!(out.contains("no drift"), "{out}");
            return out;
        }
        assert!(Instant::now() < deadline, "still drifting after {within:?}:\n{out}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
