//! `slate run dashboard` over separately running roles: the real binary scrapes two live
//! `/metrics` endpoints (served here from real `Metrics` registries, as the enricher and the sinks
//! serve theirs) and one dead one; totals add up across processes, rates follow new counts, the
//! dead endpoint is listed as down, and SIGTERM stops it cleanly. With `shadow_metrics_urls`, a
//! shadow enricher and a validator (a fake `/metrics` with the validator's gauges) are scraped
//! apart from the live roles and reported as the `shadow` object; without, `shadow` is null.

mod common;

use slate::metrics::{Metrics, label, labels};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `/metrics` server on a free loopback port; stopped when dropped.
struct Served {
    url: String,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: axum::Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Served { url: format!("http://{addr}/metrics"), task }
}

/// Serves a real registry, as the enricher and the sinks serve theirs.
async fn serve_metrics(m: Metrics) -> Served {
    serve(axum::Router::new().route("/metrics", axum::routing::get(move || async move { m.encode() }))).await
}

/// Serves whatever exposition text `body` holds at the time of the request.
async fn serve_text(body: Arc<Mutex<String>>) -> Served {
    serve(axum::Router::new().route("/metrics", axum::routing::get(move || async move { body.lock().unwrap().clone() }))).await
}

/// A port nothing listens on (bound, then released).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}/metrics", l.local_addr().expect("addr"))
}

/// `slate run dashboard` with these `SLATE_DASHBOARD__*` settings; returns the process and the
/// `host:port` it serves on (from its first line).
fn start_dashboard(settings: &[(&str, String)]) -> (Killed, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.args(["run", "dashboard"])
        .env("SLATE_DASHBOARD__LISTEN", "127.0.0.1:0")
        .env("SLATE_DASHBOARD__SCRAPE_TIMEOUT", "500ms")
        .env("SLATE_LOG", "warn")
        .stdout(Stdio::piped());
    for (key, value) in settings {
        cmd.env(format!("SLATE_DASHBOARD__{key}"), value);
    }
    let mut child = cmd.spawn().expect("slate run dashboard starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let child = Killed(child);
    let first = lines.next().expect("a line").expect("utf-8");
    let base =
        first.strip_prefix("dashboard: ").and_then(|r| r.split('/').nth(2)).unwrap_or_else(|| panic!("unexpected first line: {first}"));
    (child, base.to_string())
}

/// SIGTERM, then a clean exit within 20 s.
async fn stop(child: Killed) {
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

/// The URLs of `served`, then `extra`, as a TOML (and JSON) array.
fn json_urls(served: &[&Served], extra: &[&str]) -> String {
    let urls: Vec<&str> = served.iter().map(|s| s.url.as_str()).chain(extra.iter().copied()).collect();
    serde_json::to_string(&urls).expect("json array is TOML too")
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
    let dead = dead_url();
    let served = [serve_metrics(enricher.clone()).await, serve_metrics(sink.clone()).await, serve_metrics(replica).await];
    let (child, base) = start_dashboard(&[("METRICS_URLS", json_urls(&served.iter().collect::<Vec<_>>(), &[dead.as_str()]))]);
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
    assert_eq!(stats.get("shadow"), Some(&serde_json::Value::Null), "no shadow_metrics_urls: shadow is present and null: {stats}");
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

    stop(child).await;
}

fn source(stats: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    stats["shadow"]["sources"].as_array()?.iter().find(|s| s["source"] == name).cloned()
}

fn validator_metrics(topics_ratio: f64) -> String {
    format!(
        "# TYPE slate_shadow_match_ratio gauge\nslate_shadow_match_ratio{{source=\"topics\"}} {topics_ratio}\n\
         # TYPE slate_shadow_keys gauge\nslate_shadow_keys{{source=\"topics\",state=\"equal\"}} 3\n\
         slate_shadow_keys{{source=\"topics\",state=\"different\"}} 1\nslate_shadow_keys{{source=\"topics\",state=\"missing_shadow\"}} 2\n\
         # TYPE slate_shadow_compares_total counter\nslate_shadow_compares_total 4\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_dashboard_compares_live_and_shadow_apart() {
    let (live, shadow) = (Metrics::new(), Metrics::new());
    let topic = labels("entity", "production", "kind", "record");
    live.enricher_emitted_total.get_or_create(&topic).inc_by(7);
    shadow.enricher_emitted_total.get_or_create(&topic).inc_by(100);
    shadow.enricher_freshness_seconds.observe(0.2);
    let validator = Arc::new(Mutex::new(validator_metrics(0.75)));
    let dead = dead_url();
    let live_served = serve_metrics(live.clone()).await;
    let (shadow_served, validator_served) = (serve_metrics(shadow.clone()).await, serve_text(validator.clone()).await);
    let (child, base) = start_dashboard(&[
        ("METRICS_URLS", json_urls(&[&live_served], &[])),
        ("SHADOW_METRICS_URLS", json_urls(&[&shadow_served, &validator_served], &[dead.as_str()])),
    ]);
    let stats_url = format!("http://{base}/api/stats");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");

    let stats =
        wait_stats(&client, &stats_url, "the validator's topics match ratio", |s| source(s, "topics").is_some_and(|t| t["ratio"] == 0.75))
            .await;
    let sh = &stats["shadow"];
    let topics = source(&stats, "topics").expect("topics");
    assert_eq!(topics["keys"]["different"], 1.0, "{stats}");
    assert_eq!(topics["keys"]["missing_shadow"], 2.0, "{stats}");
    assert_eq!(topics["keys"]["stale_live"], 0.0, "every state is listed, 0 when not exported: {stats}");
    assert_eq!(sh["compares"], 4.0, "{stats}");
    // Both enrichers export the same metric names; the live rows count the live one only.
    assert_eq!(stage(&stats, "enricher emitted").map(|r| r["total"].clone()), Some(7.0.into()), "shadow not summed into live: {stats}");
    let pipelines: Vec<_> = sh["pipelines"].as_array().expect("pipelines").iter().map(|p| p["pipeline"].clone()).collect();
    assert_eq!(pipelines, ["live", "shadow"], "{stats}");
    let shadow_enricher = &sh["pipelines"][1]["freshness"][0];
    assert_eq!((&shadow_enricher["stage"], &shadow_enricher["samples"]), (&"enricher".into(), &1.0.into()), "{stats}");
    assert_eq!(sh["pipelines"][0]["freshness"][0]["samples"], 0.0, "the live enricher observed nothing: {stats}");
    let targets = sh["targets"].as_array().expect("shadow targets");
    let up: Vec<_> = targets.iter().map(|t| (t["url"].as_str().unwrap_or_default(), t["up"] == true)).collect();
    assert_eq!(up, [(shadow_served.url.as_str(), true), (validator_served.url.as_str(), true), (dead.as_str(), false)], "{stats}");
    assert_eq!(stats["targets"].as_array().map(Vec::len), Some(1), "shadow endpoints are not listed with the live roles: {stats}");

    // The shadow enricher moves, the live one does not; the validator's ratio is read as it is now.
    shadow.enricher_emitted_total.get_or_create(&topic).inc_by(50);
    *validator.lock().unwrap() = validator_metrics(1.0);
    let stats = wait_stats(&client, &stats_url, "a shadow enricher rate and the new ratio", |s| {
        let rate = |i: usize| s["shadow"]["pipelines"][i]["enricher_per_sec"].as_f64();
        source(s, "topics").is_some_and(|t| t["ratio"] == 1.0) && rate(1).is_some_and(|r| r > 0.0)
    })
    .await;
    assert_eq!(stats["shadow"]["pipelines"][0]["enricher_per_sec"], 0.0, "the live enricher emitted nothing new: {stats}");
    let page = client.get(format!("http://{base}/")).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("id=\"shadow-panel\""), "the page has the live-vs-shadow panel");

    stop(child).await;
    drop((live_served, shadow_served, validator_served));
}

#[test]
fn dashboard_config_names_the_bad_key() {
    let err = slate::config::Config::load(None, &[common::ov("dashboard.metrics_urls", "[]")]).expect_err("empty list refused");
    assert!(err.to_string().contains("dashboard.metrics_urls"), "{err}");
    let err = slate::config::Config::load(None, &[common::ov("dashboard.metrics_urls", "[\"enricher:9464/metrics\"]")])
        .expect_err("URL without scheme refused");
    assert!(err.to_string().contains("dashboard.metrics_urls[0]"), "{err}");
    let err = slate::config::Config::load(None, &[common::ov("dashboard.shadow_metrics_urls", "[\"validator:9470/metrics\"]")])
        .expect_err("shadow URL without scheme refused");
    assert!(err.to_string().contains("dashboard.shadow_metrics_urls[0]"), "{err}");
    let cfg = slate::config::Config::load(None, &[]).expect("defaults load");
    assert!(cfg.dashboard.shadow_metrics_urls.is_empty(), "no shadow pipeline unless configured");
}
