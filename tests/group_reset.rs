//! `slate group show | reset` (the binary): rebuild a dropped search index from the enriched
//! topic without touching the source (tansu, the ES API, `slate verify`), and every reset
//! target plus `show --wait` on noida-db, whose Kafka API answers timestamp lookups and reports
//! high watermarks of multi-record batches correctly (tansu 0.6 does neither).

mod common;
mod enricher_support;

use common::*;
use enricher_support::*;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use slate::metrics::Metrics;
use slate::sink::runner;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Runs `slate group ARGS` against `bootstrap` with the sinks' group and topic prefixes.
async fn group_cli(bootstrap: &str, sinks: &slate::config::SinksConfig, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        .env("SLATE_SINKS__GROUP_PREFIX", &sinks.group_prefix)
        .env("SLATE_SINKS__TOPIC_PREFIX", &sinks.topic_prefix)
        .args(["--log", "warn", "group"])
        .args(args);
    run_command(&mut cmd, Duration::from_secs(60)).await
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("stdout is one JSON object ({e}):\n{out}"))
}

/// (partition, committed) of each partition in a `group show --json` answer.
fn committed(show: &Value) -> Vec<(String, i64, Option<i64>)> {
    let mut v: Vec<_> = show["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["topic"].as_str().unwrap().to_string(), p["partition"].as_i64().unwrap(), p["committed"].as_i64()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_search_index_is_rebuilt_from_the_enriched_topic_after_a_group_reset() {
    let registry = TestRegistry::start().await;
    let mut cfg = pipeline_config(
        &registry.url,
        &[
            ov("studio.load.mutations_per_sec", 300),
            ov("studio.load.max_mutations", 200),
            ov("studio.num_productions", 6),
            ov("studio.snapshot_on_start", true),
        ],
    );
    sinks_behind_enricher(&mut cfg);
    cfg.sinks.search.url = env("TEST_ES_URL");
    cfg.sinks.search.index_prefix = format!("{}-", unique("rebuild"));
    let mut studio = slate::studio::server::start(&cfg, Metrics::new()).await.unwrap();
    use_studio(&mut cfg, &studio);
    let enricher = slate::enrich::start(&cfg, Metrics::new()).await.unwrap();
    let search = || async { slate::sink::search::SearchSink::connect(&cfg.sinks.search, cfg.entities()).await.unwrap() };
    let sink = runner::start(&cfg, std::sync::Arc::new(search().await), Metrics::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), studio.load_finished()).await.unwrap();
    until_clean(&cfg, &["--sink", "search"], Duration::from_secs(90)).await;
    let bootstrap = kafka_bootstrap();

    // The index is lost behind the pipeline's back; verify sees it.
    let http = reqwest::Client::new();
    for e in cfg.entities().iter() {
        let index = format!("{}{}", cfg.sinks.search.index_prefix, e.name);
        let r = http.delete(format!("{}/{index}", cfg.sinks.search.url)).send().await.unwrap();
        assert!(r.status().is_success(), "delete {index}: {}", r.status());
    }
    let (code, out) = verify_cli(&cfg, &["--sink", "search"]).await;
    assert_eq!(code, 1, "{out}");

    // A reset under a running member is refused, naming the members.
    let (ok, out, err) = group_cli(&bootstrap, &cfg.sinks, &["reset", "--role", "search", "--to-earliest"]).await;
    assert!(!ok, "refused while the sink runs:\n{out}\n{err}");
    assert!(err.contains("live member") && err.contains("stop them first"), "{err}");

    sink.shutdown().await.unwrap();
    let (ok, out, err) = group_cli(&bootstrap, &cfg.sinks, &["show", "--role", "search", "--json"]).await;
    assert!(ok, "{out}\n{err}");
    let before = json(&out);
    assert_eq!(before["members"].as_array().unwrap().len(), 0, "the stopped sink left its group: {before}");
    assert!(committed(&before).iter().any(|(_, _, c)| c.unwrap_or(0) > 0), "the sink had committed: {before}");

    // A dry run prints the moves and commits nothing.
    let (ok, out, err) = group_cli(&bootstrap, &cfg.sinks, &["reset", "--role", "search", "--to-earliest", "--dry-run", "--json"]).await;
    assert!(ok, "{out}\n{err}");
    let dry = json(&out);
    assert_eq!(dry["dry_run"], true);
    let moves = dry["moves"].as_array().unwrap();
    assert_eq!(moves.len(), cfg.entities().iter().count() * 2, "every partition of every enriched topic: {dry}");
    assert!(moves.iter().all(|m| m["to"] == m["low"]), "{dry}");
    let (_, out, _) = group_cli(&bootstrap, &cfg.sinks, &["show", "--role", "search", "--json"]).await;
    assert_eq!(committed(&json(&out)), committed(&before), "a dry run moves nothing");

    let (ok, out, err) = group_cli(&bootstrap, &cfg.sinks, &["reset", "--role", "search", "--to-earliest"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("| new offset |") && out.contains("moved 12 partition(s)"), "{out}");
    let (_, out, _) = group_cli(&bootstrap, &cfg.sinks, &["show", "--role", "search", "--json"]).await;
    assert!(committed(&json(&out)).iter().all(|(_, _, c)| *c == Some(0)), "{out}");

    // The sink restarts from the log start and rebuilds the index; the source is not asked.
    let sink = runner::start(&cfg, std::sync::Arc::new(search().await), Metrics::new()).await.unwrap();
    let report = until_clean(&cfg, &["--sink", "search"], Duration::from_secs(90)).await;
    assert!(report.contains("| search | production |"), "{report}");

    sink.shutdown().await.unwrap();
    enricher.shutdown().await;
    studio.shutdown().await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_reset_target_and_show_wait_on_a_broker_with_timestamps() {
    let noida = Noida::start().await;
    let mut kafka = slate::config::Config::default().kafka;
    kafka.bootstrap_servers = noida.bootstrap.clone();
    let topic = unique("reset");
    slate::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic), 2, 1).await.unwrap();
    let producer: FutureProducer = slate::kafka::base_config(&kafka).set("linger.ms", "20").create().unwrap();
    let t0 = slate::time::now_millis() - 600_000;
    let mut sent = Vec::new();
    for i in 0..20i64 {
        let record = FutureRecord::to(&topic).partition((i % 2) as i32).key("k").payload("v").timestamp(t0 + (i / 2) * 1000);
        sent.push(producer.send_result(record).unwrap());
    }
    for s in sent {
        s.await.unwrap().unwrap();
    }
    let sinks = slate::config::SinksConfig::default();
    let group = unique("g");
    let reset = |args: &[&str]| {
        let mut all: Vec<String> = ["reset", "--group", &group, "--topic", &topic].map(String::from).to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        all.push("--json".into());
        let (b, s) = (noida.bootstrap.clone(), sinks.clone());
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let (ok, out, err) = group_cli(&b, &s, &all).await;
            assert!(ok, "{all:?}:\n{out}\n{err}");
            json(&out)
        }
    };
    let to = |v: &Value| -> Vec<i64> { v["moves"].as_array().unwrap().iter().map(|m| m["to"].as_i64().unwrap()).collect() };

    let (ok, out, err) = group_cli(&noida.bootstrap, &sinks, &["show", "--group", &group, "--topic", &topic, "--json"]).await;
    assert!(ok, "{out}\n{err}");
    let show = json(&out);
    assert_eq!(show["lag"], 20, "a group that never committed lags by the whole log: {show}");

    // Each partition holds offsets 0..10 with timestamps t0, t0+1s, …
    let v = reset(&["--to-timestamp", &(t0 + 4500).to_string()]).await;
    assert_eq!(to(&v), [5, 5], "the first message at or after the time: {v}");
    let v = reset(&["--to-timestamp", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(to(&v), [10, 10], "{v}");
    assert!(v["moves"][0]["note"].as_str().unwrap().contains("no message at or after"), "{v}");
    let v = reset(&["--to-offset", "99"]).await;
    assert_eq!(to(&v), [10, 10]);
    assert!(v["moves"][0]["note"].as_str().unwrap().contains("past the end"), "{v}");
    let v = reset(&["--to-earliest"]).await;
    assert_eq!(to(&v), [0, 0]);
    let (ok, out, err) =
        group_cli(&noida.bootstrap, &sinks, &["reset", "--group", &group, "--topic", &format!("{topic}:1"), "--to-offset", "3"]).await;
    assert!(ok && out.contains(&format!("| {topic} | 1 | 0 | 3 |")), "{out}\n{err}");
    let (_, out, _) = group_cli(&noida.bootstrap, &sinks, &["show", "--group", &group, "--topic", &topic, "--json"]).await;
    assert_eq!(committed(&json(&out)), [(topic.clone(), 0, Some(0)), (topic.clone(), 1, Some(3))]);

    // `show --wait` follows a consumer of the group catching up (17 records) to lag 0.
    let mut waiter = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"))
        .env("SLATE_KAFKA__BOOTSTRAP_SERVERS", &noida.bootstrap)
        .args(["--log", "warn", "group", "show", "--group", &group, "--topic", &topic, "--wait", "--timeout", "50s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Consume only once the waiter has read the lag, so it sees the catch-up happen.
    let mut stderr = tokio::io::BufReader::new(waiter.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), stderr.next_line()).await.expect("show --wait starts").unwrap();
    assert_eq!(
        first.as_deref(),
        Some(
            format!("group {group}: waiting for its lag of 17 records to reach 0 (0 live member(s); no live member consumes it yet)")
                .as_str()
        )
    );
    let consumer: StreamConsumer = slate::kafka::base_config(&kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut n = 0;
    while n < 17 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("records arrive").unwrap();
        consumer.commit_message(&m, CommitMode::Sync).unwrap();
        assert!(m.offset() >= if m.partition() == 1 { 3 } else { 0 }, "read from the reset offsets");
        n += 1;
    }
    // While the consumer is a live member, resets are refused.
    let (ok, _, err) = group_cli(&noida.bootstrap, &sinks, &["reset", "--group", &group, "--topic", &topic, "--to-earliest"]).await;
    assert!(!ok && err.contains("1 live member(s)"), "{err}");
    let out = tokio::time::timeout(Duration::from_secs(60), waiter.wait_with_output()).await.expect("show --wait returns").unwrap();
    let mut err = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        err.push_str(&line);
        err.push('\n');
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "show --wait returns once the lag is 0:\n{stdout}\n{err}");
    assert!(stdout.contains("total lag: 0 records"), "{stdout}");
    assert!(err.contains("catching up") && err.contains("17/17 (100%)"), "progress on stderr:\n{err}");
    drop(consumer);
}
