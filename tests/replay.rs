//! `slate replay` (the binary) on the real broker with the studio as source of truth: one
//! acknowledged UPDATE event per source id on the enricher's input topic, a dry run that
//! publishes nothing, progress on stderr with only the JSON summary on stdout, and clear
//! failures when the source or the broker cannot be reached.

mod common;

use common::*;
use slate::event::{ChangeEvent, ChangeType};
use slate::metrics::Metrics;
use std::collections::BTreeSet;
use std::time::Duration;

const PARTITIONS: i32 = 2;

/// Runs `slate replay ARGS` against `graphql` and `bootstrap`, with `prefix` as the enricher's
/// input topic prefix; returns (success, stdout, stderr).
async fn replay_cli(graphql: &str, bootstrap: &str, prefix: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        .env("SLATE_SOURCES__GRAPHQL_ENDPOINT", graphql)
        .env("SLATE_ENRICHER__INPUT_TOPIC_PREFIX", prefix)
        .args(["--log", "warn", "replay"])
        .args(args);
    run_command(&mut cmd, Duration::from_secs(120)).await
}

/// A studio that serves reads only (publishing off), and a fresh input topic prefix.
async fn studio() -> (slate::studio::server::RunningStudio, String, String) {
    let cfg = studio_config(&[ov("studio.publish", false), ov("studio.num_productions", 9)]);
    let studio = slate::studio::server::start(&cfg, Metrics::new()).await.expect("studio starts");
    let graphql = format!("http://{}/graphql", studio.http_addr);
    (studio, graphql, format!("{}.", unique("replay")))
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_publishes_one_acknowledged_update_per_source_id() {
    let (studio, graphql, prefix) = studio().await;
    let topic = slate::studio::kind::PRODUCTION.changes_topic(&prefix);
    let cfg = studio_config(&[]);
    slate::kafka::ensure_topics(&cfg.kafka, std::slice::from_ref(&topic), PARTITIONS, 1).await.unwrap();
    let ids: BTreeSet<String> = studio.studio.store.list_ids(slate::studio::kind::PRODUCTION, None, usize::MAX).into_iter().collect();
    let n = ids.len() as u64;
    assert!(n >= 9, "the studio seeds productions: {ids:?}");

    // A dry run lists and counts, and publishes nothing (checked below: the topic ends with
    // exactly one event per id, all from the real run).
    let (ok, out, err) = replay_cli(&graphql, &kafka_bootstrap(), &prefix, &["--entity", "production", "--dry-run", "--json"]).await;
    assert!(ok, "dry run failed:\n{out}\n{err}");
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is only JSON ({e}):\n{out}"));
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!((dry["listed"].as_u64(), dry["published"].as_u64()), (Some(n), Some(0)), "{dry}");
    assert_eq!(dry["entities"]["production"]["listed"].as_u64(), Some(n), "{dry}");
    assert!(!err.contains("events published"), "a dry run publishes nothing:\n{err}");

    let (ok, out, err) = replay_cli(&graphql, &kafka_bootstrap(), &prefix, &["--entity", "production", "--rate", "500", "--json"]).await;
    assert!(ok, "replay failed:\n{out}\n{err}");
    assert_eq!(out.trim_end().lines().count(), 1, "stdout is one JSON object:\n{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is only JSON ({e}):\n{out}"));
    assert_eq!(summary["dry_run"], false, "{summary}");
    assert_eq!(summary["entities"]["production"]["listed"].as_u64(), Some(n), "{summary}");
    assert_eq!(summary["entities"]["production"]["published"].as_u64(), Some(n), "{summary}");
    assert_eq!((summary["listed"].as_u64(), summary["published"].as_u64()), (Some(n), Some(n)), "{summary}");
    assert_eq!(summary["entities"].as_object().unwrap().len(), 1, "only the chosen entity: {summary}");
    assert!(summary["elapsed_ms"].is_u64(), "{summary}");
    // Progress went to stderr: not a terminal, so plain lines, always a final one.
    assert!(err.contains(&format!("replay production: ids listed: {n}")), "{err}");
    assert!(err.contains(&format!("replay production: events published: {n}/{n} (100%)")), "{err}");
    assert!(!err.contains('\r'), "no redraws outside a terminal:\n{err:?}");

    let t = topic.clone();
    let records = tokio::task::spawn_blocking(move || {
        read_n(&t, PARTITIONS, n as usize, Duration::from_secs(30));
        read_all(&t, PARTITIONS)
    })
    .await
    .unwrap();
    assert_eq!(records.len() as u64, n, "exactly one event per id (and none from the dry run)");
    let mut seen = BTreeSet::new();
    let mut uuids = BTreeSet::new();
    for (key, payload, _) in records {
        let e = ChangeEvent::decode_json(&payload.expect("an event, not a tombstone"), Some(&key), None).expect("a change event");
        assert_eq!((e.entity, e.change_type), (slate::studio::kind::PRODUCTION, ChangeType::Update), "{e:?}");
        assert_eq!(key, e.id.as_bytes(), "keyed by id");
        assert_eq!(e.source.as_deref(), Some("slate-replay"));
        assert!(uuids.insert(e.uuid), "uuids are distinct: {e:?}");
        seen.insert(e.id);
    }
    assert_eq!(seen, ids, "one event for every source id");
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_fails_clearly_when_the_source_is_unreachable() {
    // Nothing listens on port 1 of the loopback.
    let url = "http://127.0.0.1:1/graphql";
    let prefix = format!("{}.", unique("replay"));
    let topic = slate::studio::kind::PRODUCTION.changes_topic(&prefix);
    slate::kafka::ensure_topics(&studio_config(&[]).kafka, std::slice::from_ref(&topic), PARTITIONS, 1).await.unwrap();
    for args in [&["--entity", "production", "--json"][..], &["--dry-run", "--json"][..]] {
        let (ok, out, err) = replay_cli(url, &kafka_bootstrap(), &prefix, args).await;
        assert!(!ok, "{args:?} must fail:\n{out}\n{err}");
        assert!(err.contains(url) && err.contains("cannot list production ids"), "{args:?}: the error names the source URL:\n{err}");
        assert_eq!(out, "", "{args:?}: nothing on stdout");
    }
    let records = tokio::task::spawn_blocking(move || read_all(&topic, PARTITIONS)).await.unwrap();
    assert!(records.is_empty(), "nothing published");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_fails_clearly_when_the_broker_is_unreachable_or_the_topic_missing() {
    let (studio, graphql, prefix) = studio().await;
    let (ok, out, err) = replay_cli(&graphql, "127.0.0.1:1", &prefix, &["--entity", "talent"]).await;
    assert!(!ok, "{out}\n{err}");
    assert!(err.contains("cannot reach the Kafka broker at 127.0.0.1:1"), "{err}");
    assert_eq!(out, "");
    // A typo in the prefix must not publish into a topic nobody reads.
    let (ok, out, err) = replay_cli(&graphql, &kafka_bootstrap(), &prefix, &["--entity", "talent"]).await;
    assert!(!ok, "{out}\n{err}");
    assert!(err.contains(&format!("topic {prefix}talent.changes does not exist")), "{err}");
    studio.shutdown().await;
}
