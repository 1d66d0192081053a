//! `slate run dashboard` over separately running roles: the real binary scrapes two live
//! `/metrics` endpoints (served here from real `Metrics` registries, as the enricher and the sinks
//! serve theirs) and one dead one; totals add up across processes, rates follow new counts, the
//! dead endpoint is listed as down, and SIGTERM stops it cleanly.

mod common;

use slate::metrics::{Metrics, label};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve_metrics(m: Metrics) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { m.encode() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/metrics")
}

fn stage(stats: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    stats["stages"].as_array()?.iter().find(|s| s["stage"] == name).cloned()
}

async fn wait_stats(client: &reqwest::Client, url: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            if ok(&v) {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}; last stats: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_dashboard_sums_roles_and_lists_the_dead_one() {
    let (enricher, sink) = (Metrics::new(), Metrics::new());
    enricher.enricher_consumed_total.get_or_create(&label("topic", "studio.production.changes")).inc_by(7);
    sink.sink_written_total.get_or_create(&label("sink", "sql")).inc_by(10);
    sink.sink_freshness_seconds.get_or_create(&label("sink", "sql")).observe(0.2);
    // A second replica of the SQL sink, in another process: its counts add to the same row.
    let replica = Metrics::new();
    replica.sink_written_total.get_or_create(&label("sink", "sql")).inc_by(5);
    replica.sink_freshness_seconds.get_or_create(&label("sink", "sql")).observe(0.2);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/metrics", l.local_addr().expect("addr"))
    };
    let urls = vec![serve_metrics(enricher.clone()).await, serve_metrics(sink.clone()).await, serve_metrics(replica).await, dead.clone()];

    let mut child = Command::new(env!("CARGO_BIN_EXE_slate"))
        .args(["run", "dashboard"])
        .env("SLATE_DASHBOARD__LISTEN", "127.0.0.1:0")
        .env("SLATE_DASHBOARD__METRICS_URLS", serde_json::to_string(&urls).expect("json array is TOML too"))
        .env("SLATE_DASHBOARD__SCRAPE_TIMEOUT", "500ms")
        .env("SLATE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("slate run dashboard starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let child = Killed(child);
    let first = lines.next().expect("a line").expect("utf-8");
    let base =
        first.strip_prefix("dashboard: ").and_then(|r| r.split('/').nth(2)).unwrap_or_else(|| panic!("unexpected first line: {first}"));
    let stats_url = format!("http://{base}/api/stats");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");

    let stats = wait_stats(&client, &stats_url, "totals from both sink processes", |s| {
        stage(s, "sink sql").is_some_and(|r| r["total"] == 15.0) && stage(s, "enricher consumed").is_some_and(|r| r["total"] == 7.0)
    })
    .await;
    let targets = stats["targets"].as_array().expect("targets listed");
    assert_eq!(targets.len(), 4, "{stats}");
    let down: Vec<_> = targets.iter().filter(|t| t["up"] == false).collect();
    assert_eq!(down.len(), 1, "exactly the dead endpoint is down: {stats}");
    assert_eq!(down[0]["url"], dead.as_str());
    assert!(down[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "the down endpoint carries its error: {stats}");
    assert_eq!(stats["links"]["metrics"], serde_json::Value::Null, "a remote dashboard serves no /metrics of its own");
    let fresh = stats["freshness"].as_array().and_then(|f| f.iter().find(|x| x["stage"] == "sink sql")).cloned().expect("sql freshness");
    assert_eq!(fresh["samples"], 2.0, "observations of both replicas: {fresh}");

    // New writes show up as a rate.
    sink.sink_written_total.get_or_create(&label("sink", "sql")).inc_by(30);
    wait_stats(&client, &stats_url, "a positive SQL sink rate", |s| {
        stage(s, "sink sql").is_some_and(|r| r["total"] == 45.0 && r["per_sec"].as_f64().is_some_and(|p| p > 0.0))
    })
    .await;
    let page = client.get(format!("http://{base}/")).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("id=\"targets\""), "the page has the scraped-roles table");
    assert_eq!(client.get(format!("http://{base}/metrics")).send().await.expect("GET").status(), 404);

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "dashboard did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn dashboard_config_names_the_bad_key() {
    let err = slate::config::Config::load(None, &[common::ov("dashboard.metrics_urls", "[]")]).expect_err("empty list refused");
    assert!(err.to_string().contains("dashboard.metrics_urls"), "{err}");
    let err = slate::config::Config::load(None, &[common::ov("dashboard.metrics_urls", "[\"enricher:9464/metrics\"]")])
        .expect_err("URL without scheme refused");
    assert!(err.to_string().contains("dashboard.metrics_urls[0]"), "{err}");
}
