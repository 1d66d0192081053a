//! `slate demo` as a newcomer meets it: the real binary on its embedded defaults (in-process
//! broker, in-memory registry, SQLite, Parquet), the dashboard driven in headless Chromium with a
//! click on the launch-date button and a saved screenshot, the analyst API queried directly, and
//! a clean shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the demo if the test fails before it stops it.
struct DemoProcess(Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn graphql(client: &reqwest::Client, url: &str, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let response = client.post(url).json(&serde_json::json!({ "query": query, "variables": variables })).send().await;
    let body: serde_json::Value = match response {
        Ok(r) => r.json().await.unwrap_or_else(|e| panic!("analyst API at {url}: {e}")),
        Err(e) => panic!("analyst API at {url}: {e}"),
    };
    assert!(body.get("errors").is_none(), "analyst API errors: {body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_dashboard_in_chromium_then_clean_shutdown() {
    let (python, chromium, chromedriver) = (common::env("TEST_PYTHON"), common::env("TEST_CHROMIUM"), common::env("TEST_CHROMEDRIVER"));
    let run_dir = std::path::PathBuf::from(common::env("TEST_RUN_DIR"));
    let data_dir = run_dir.join(common::unique("demo-data"));
    // What an earlier demo left (here: unreadable on purpose) is replaced; other files stay.
    std::fs::create_dir_all(data_dir.join("audit/entity=production")).expect("data dir");
    std::fs::write(data_dir.join("slate.db"), b"not a database").expect("old db");
    std::fs::write(data_dir.join("audit/entity=production/old.parquet"), b"not parquet").expect("old audit file");
    std::fs::write(data_dir.join("notes.txt"), b"mine").expect("user file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slate"))
        .args(["demo", "--listen", "127.0.0.1:0", "--productions", "12", "--mutations-per-sec", "10", "--data-dir"])
        .arg(&data_dir)
        .args(["--search-url", &common::env("TEST_ES_URL")])
        .env("SLATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("slate demo starts");
    let stdout = child.stdout.take().expect("piped");
    let demo = DemoProcess(child);

    // Every stdout line goes to the channel, so the test can wait for the URL and, later, for
    // the shutdown message.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo| {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let base = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("demo prints its dashboard URL in time");
        if let Some(url) = line.trim().strip_prefix("dashboard:") {
            break url.trim().trim_end_matches('/').to_string();
        }
    };

    // The browser part: live numbers, the button, the projection moving, a screenshot.
    let shot = run_dir.join("dashboard.png");
    let out = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/dashboard.py"))
        .arg(format!("{base}/"))
        .arg(&shot)
        .args([&chromium, &chromedriver])
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dashboard.py failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dashboard.py prints JSON");
    println!("dashboard observed: {seen}\nscreenshot: {}", shot.display());
    assert_ne!(seen["launch_before"], seen["launch_after"], "the launch date shown did not change: {seen}");
    assert_ne!(seen["months_before"], seen["months_after"], "the projection's months did not move: {seen}");
    let png = std::fs::read(&shot).expect("screenshot saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot is not a real PNG ({} bytes)", png.len());
    let groups = seen["lag_groups"].as_array().expect("lag groups listed");
    assert!(!groups.is_empty(), "no consumer lag shown: {seen}");

    // The analyst API directly: every seeded production (plus the demo's own) has arrived with
    // its budget, and the audit trail holds the featured production's history.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let api = format!("{base}/graphql");
    let featured: serde_json::Value =
        client.get(format!("{base}/api/demo/featured")).send().await.expect("featured").json().await.expect("featured JSON");
    let id = featured["production_id"].as_str().expect("production id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = graphql(&client, &api, "{ productions(first: 100) { totalCount nodes { id budget } } }", serde_json::json!({})).await;
        let nodes = d["productions"]["nodes"].as_array().cloned().unwrap_or_default();
        if d["productions"]["totalCount"] == 13 && nodes.iter().all(|n| n["budget"].as_i64().is_some_and(|b| b > 0)) {
            break;
        }
        assert!(Instant::now() < deadline, "not all 13 productions with a budget in the SQL sink after 60 s: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let history_query = "query($id: ID!) { history(entity: PRODUCTION, id: $id) { changeType sourceVersion } }";
    let history = loop {
        let d = graphql(&client, &api, history_query, serde_json::json!({ "id": id })).await;
        let events = d["history"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            break events;
        }
        assert!(Instant::now() < deadline, "no audit history of {id} after 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(history.last().expect("one event at least")["changeType"], "CREATE", "oldest event of {id} is its creation: {history:?}");

    // Every stage moved data (the search sink too, on the test's Elasticsearch API) and nothing
    // was dead-lettered: the demo's input is all valid.
    // The stats come from periodic metric snapshots, so they lag the sinks' writes a little: a
    // stage that wrote (its Parquet is readable above) may show in the next snapshot only.
    let stages = ["source changes", "enricher consumed", "enricher emitted", "sink sql", "sink audit", "sink search"];
    let moved = |stats: &serde_json::Value, stage: &str| {
        stats["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["stage"] == stage))
            .is_some_and(|r| r["total"].as_f64().is_some_and(|t| t > 0.0))
    };
    let stats = loop {
        let stats: serde_json::Value =
            client.get(format!("{base}/api/stats")).send().await.expect("stats").json().await.expect("stats JSON");
        match stages.iter().find(|stage| !moved(&stats, stage)) {
            None => break stats,
            Some(stage) => assert!(Instant::now() < deadline, "stage {stage} moved nothing within 60 s: {stats}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(stats["dead_lettered"], serde_json::json!({}), "the demo dead-lettered something: {stats}");

    // SIGTERM: the demo drains, commits and says so, with exit status 0.
    let pid = demo.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("stopped cleanly") => break,
            Ok(_) => {}
            Err(e) => panic!("the demo did not report a clean stop within 60 s: {e}"),
        }
    }
    let mut demo = demo;
    let status = demo.0.wait().expect("demo exits");
    assert!(status.success(), "demo exit status {status}");
    assert!(data_dir.join("slate.db").exists(), "SQLite database kept in the data directory");
    assert!(!data_dir.join("audit/entity=production/old.parquet").exists(), "the previous run's audit tree was replaced");
    assert_eq!(std::fs::read(data_dir.join("notes.txt")).expect("user file kept"), b"mine");
}

#[test]
fn demo_refuses_a_taken_port_before_starting_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data_dir = std::path::PathBuf::from(common::env("TEST_RUN_DIR")).join(common::unique("demo-port"));
    let out = Command::new(env!("CARGO_BIN_EXE_slate"))
        .args(["demo", "--listen", &addr, "--data-dir"])
        .arg(&data_dir)
        .env("SLATE_LOG", "warn")
        .output()
        .expect("slate demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "demo started on a taken port");
    assert!(stderr.contains(&format!("cannot bind the dashboard on {addr}")), "error does not name the address: {stderr}");
    assert!(!data_dir.exists(), "nothing was created before the port check");
}
