//! `slate bench enrich` runs end to end (tiny sizes): the benchmark must not rot between the
//! releases whose numbers go into the README. No timing is asserted.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn bench_enrich_prints_all_three_modes() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.env("SLATE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap()).env("SLATE_KAFKA__CONSUMER__SESSION_TIMEOUT", "6s").args([
        "--log",
        "warn",
        "bench",
        "enrich",
        "--events",
        "300",
        "--naive-events",
        "30",
        "--rate",
        "20",
        "--steady-secs",
        "1",
        "--repeat",
        "1",
        "--productions",
        "20",
        "--json",
    ]);
    let (ok, out, err) = run_command(&mut cmd, Duration::from_secs(240)).await;
    assert!(ok, "bench failed:\n{out}\n{err}");
    let reports: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    let modes: Vec<_> = reports.as_array().unwrap().iter().map(|r| r["mode"].as_str().unwrap().to_string()).collect();
    assert_eq!(modes, ["slate", "naive", "raw"]);
    for r in reports.as_array().unwrap() {
        assert!(r["events_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
    let naive = &reports[1];
    assert_eq!(naive["source_calls_per_event"].as_f64(), Some(1.0), "naive fetches once per event: {naive}");
    assert!(reports[0]["source_calls_per_event"].as_f64().unwrap() < 1.0);
}
