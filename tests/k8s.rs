//! `docker/k8s/enricher.yaml` (a Deployment and its KEDA ScaledObject), validated statically:
//! CI has no cluster. PyYAML reads the file; the real binary checks the container's exact
//! environment (`slate config check`) and command (`--help`); the ports, probes and Prometheus
//! annotation must be the metrics listener the config opens; the scaler's queries may name only
//! metrics slate exports, for the group the pods join; scale-up must react faster than
//! scale-down. Negative controls prove each check can fail. Run through `tests/run`.

mod common;
mod compose_support;

use compose_support::{config_check, get, root, slate};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const MANIFEST: &str = "docker/k8s/enricher.yaml";

fn manifest() -> Vec<Value> {
    let script = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let out = std::process::Command::new(common::env("TEST_PYTHON"))
        .args(["-c", script])
        .arg(root().join(MANIFEST))
        .output()
        .expect("TEST_PYTHON starts");
    assert!(out.status.success(), "cannot read {MANIFEST}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

/// Metric names slate exports: each `register("name", …)` of `crates/core/src/metrics.rs` under the `slate_`
/// prefix, with the suffixes its exposition adds (`_total`, histogram series). Read from the
/// source because a family with no samples yet prints nothing at `/metrics`.
fn exported() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("crates/core/src/metrics.rs")).expect("crates/core/src/metrics.rs");
    let names: Vec<&str> =
        text.split("r.register(").skip(1).filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next()).collect();
    assert!(names.len() > 20, "crates/core/src/metrics.rs registers its metrics with `r.register(\"name\", …)`");
    names.iter().flat_map(|n| ["", "_total", "_bucket", "_sum", "_count"].map(|suffix| format!("slate_{n}{suffix}"))).collect()
}

/// What is wrong with the manifest, one line per problem.
fn problems(docs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(deploy), Some(scaled)) = (kind(docs, "Deployment"), kind(docs, "ScaledObject")) else {
        return vec!["a Deployment and a ScaledObject are expected".into()];
    };
    let pod = &deploy["spec"]["template"];
    let Some([container]) = pod["spec"]["containers"].as_array().map(Vec::as_slice) else {
        return vec!["the Deployment runs one container".into()];
    };
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e["value"].as_str().unwrap_or_default().to_string()))
        .collect();
    if let Err(e) = config_check(&env) {
        out.push(format!("container env fails `slate config check`: {e}"));
        return out;
    }
    let args: Vec<&str> = container["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if args != ["run", "enricher"] || !slate(&env, &[args.as_slice(), &["--help"]].concat()).status.success() {
        out.push(format!("container args {args:?} are not `run enricher`"));
    }
    let shown = slate(&env, &["config", "show"]);
    let cfg: toml::Table = String::from_utf8_lossy(&shown.stdout).parse().expect("config show prints TOML");
    let listen = get(&cfg, "enricher.metrics_listen").unwrap_or_default();
    let (host, port) = listen.rsplit_once(':').unwrap_or(("", ""));
    if host != "0.0.0.0" {
        out.push(format!("enricher.metrics_listen {listen:?} must bind 0.0.0.0 in a pod"));
    }
    let named = container["ports"].as_array().into_iter().flatten().find(|p| p["name"] == "metrics");
    let container_port = named.map(|p| p["containerPort"].to_string()).unwrap_or_default();
    if container_port != port {
        out.push(format!("containerPort `metrics` {container_port} is not the metrics listener's port {port}"));
    }
    if pod["metadata"]["annotations"]["prometheus.io/port"].as_str() != Some(port) {
        out.push(format!("prometheus.io/port {} is not {port}", pod["metadata"]["annotations"]["prometheus.io/port"]));
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let http = &container[probe]["httpGet"];
        if !(http["port"] == "metrics" || http["port"].as_u64().map(|p| p.to_string()).as_deref() == Some(port))
            || !["/health", "/metrics"].contains(&http["path"].as_str().unwrap_or(""))
        {
            out.push(format!("{probe} {http} does not ask the metrics listener for /health or /metrics"));
        }
    }
    if scaled["spec"]["scaleTargetRef"]["name"] != deploy["metadata"]["name"] {
        out.push(format!("ScaledObject targets {} instead of the Deployment", scaled["spec"]["scaleTargetRef"]["name"]));
    }
    let group = get(&cfg, "enricher.group_id").unwrap_or_default();
    let exported = exported();
    let triggers = scaled["spec"]["triggers"].as_array().cloned().unwrap_or_default();
    if triggers.is_empty() {
        out.push("the ScaledObject has no trigger".into());
    }
    for t in &triggers {
        let query = t["metadata"]["query"].as_str().unwrap_or_default();
        for name in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("slate_")) {
            if !exported.iter().any(|e| e == name) {
                out.push(format!("query `{query}` names {name}, which slate does not export"));
            }
        }
        for label in query.split("group=\"").skip(1).filter_map(|rest| rest.split('"').next()) {
            if label != group {
                out.push(format!("query `{query}` reads group {label:?}; the pods join {group:?}"));
            }
        }
    }
    let behavior = &scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    let (up, down) =
        (behavior["scaleUp"]["stabilizationWindowSeconds"].as_i64(), behavior["scaleDown"]["stabilizationWindowSeconds"].as_i64());
    if !matches!((up, down), (Some(u), Some(d)) if u < d) {
        out.push(format!("scale-up must stabilise faster than scale-down (up {up:?}, down {down:?})"));
    }
    out
}

#[test]
fn k8s_manifest_matches_the_code() {
    let problems = problems(&manifest());
    assert!(problems.is_empty(), "{MANIFEST}:\n  {}", problems.join("\n  "));
}

#[test]
fn k8s_manifest_checks_can_fail() {
    let docs = manifest();
    let c = "/spec/template/spec/containers/0";
    let cases: Vec<(&str, &str, String, Value)> = vec![
        ("config check", "Deployment", format!("{c}/env/0/name"), json!("SLATE_ENRICHER__GROUP")),
        ("not `run enricher`", "Deployment", format!("{c}/args"), json!(["run", "enrich"])),
        ("containerPort", "Deployment", format!("{c}/ports/0/containerPort"), json!(9999)),
        (
            "does not export",
            "ScaledObject",
            "/spec/triggers/0/metadata/query".into(),
            json!("sum(slate_enricher_capacity{group=\"slate-enricher\"})"),
        ),
        (
            "the pods join",
            "ScaledObject",
            "/spec/triggers/1/metadata/query".into(),
            json!("max(slate_consumer_lag_seconds{group=\"other\"})"),
        ),
        ("targets", "ScaledObject", "/spec/scaleTargetRef/name".into(), json!("slate-sink")),
        (
            "stabilise",
            "ScaledObject",
            "/spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleUp/stabilizationWindowSeconds".into(),
            json!(600),
        ),
    ];
    for (expected, kind, pointer, value) in cases {
        let mut d = docs.clone();
        let doc = d.iter_mut().find(|x| x["kind"] == kind).unwrap();
        *doc.pointer_mut(&pointer).unwrap_or_else(|| panic!("{kind} has {pointer}")) = value;
        let found = problems(&d);
        assert!(found.iter().any(|p| p.contains(expected)), "a manifest broken for `{expected}` must be caught; got {found:?}");
    }
}
