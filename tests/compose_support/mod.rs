//! Reading `docker/compose.yaml` as Compose does (through `tests/py/compose_env.py`) and running
//! the real binary with a service's exact environment: the plumbing of `tests/compose.rs`, which
//! holds what the file must satisfy.
#![allow(dead_code)]

use crate::common;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
pub const COMPOSE: &str = "docker/compose.yaml";
pub const DOCKERFILE: &str = "docker/Dockerfile";

#[derive(Debug, Clone, Deserialize)]
pub struct Compose {
    pub volumes: Vec<String>,
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub command_form: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, Option<String>>,
    pub env_file: Vec<serde_json::Value>,
    pub ports: Vec<Port>,
    pub expose: Vec<u16>,
    pub depends_on: BTreeMap<String, String>,
    pub healthcheck: bool,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    pub dockerfile_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Port {
    pub host_ip: Option<String>,
    pub published: Option<String>,
    pub target: u16,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Volume {
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the parser on `path`: the compose file as JSON, or the parser's error.
pub fn parse(path: &Path) -> Result<Compose, String> {
    let out = Command::new(common::env("TEST_PYTHON"))
        .arg(root().join("tests/py/compose_env.py"))
        .arg(path)
        .output()
        .expect("TEST_PYTHON starts");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("compose_env.py printed bad JSON ({e})")))
}

pub fn compose() -> Compose {
    parse(&root().join(COMPOSE)).unwrap_or_else(|e| panic!("cannot read {COMPOSE}: {e}"))
}

/// Whether a service is built from the slate Dockerfile.
pub fn is_slate(s: &Service) -> bool {
    let ours = root().join(DOCKERFILE).canonicalize().expect("docker/Dockerfile exists");
    s.build.as_ref().is_some_and(|b| b.dockerfile_path.canonicalize().is_ok_and(|p| p == ours))
}

pub fn slate_services(c: &Compose) -> Vec<(&String, &Service)> {
    c.services.iter().filter(|(_, s)| is_slate(s)).collect()
}

/// A service's environment; a bare `KEY` (passed through from the host) is not allowed.
pub fn env_of(name: &str, s: &Service) -> BTreeMap<String, String> {
    s.environment
        .iter()
        .map(|(k, v)| {
            let v = v.clone().unwrap_or_else(|| panic!("services.{name}: {k} has no value; set it in the file"));
            (k.clone(), v)
        })
        .collect()
}

/// The binary with exactly `env` (and PATH), as in the container: outside the repository, in
/// a directory holding only what the Dockerfile copies into the image's working directory.
pub fn slate(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .args(args)
        .current_dir(image_workdir())
        .output()
        .expect("slate runs")
}

/// The runtime image's `WORKDIR /opt/slate`, rebuilt from the Dockerfile's
/// `COPY <repo path> /opt/slate/<path>` lines (once per test process).
fn image_workdir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("slate-image-{}", uuid::Uuid::new_v4().simple()));
        let dockerfile = std::fs::read_to_string(DOCKERFILE).expect("read the Dockerfile");
        for line in dockerfile.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["COPY", from, to] = words[..]
                && let Some(to) = to.strip_prefix("/opt/slate/")
            {
                copy_tree(Path::new(from), &dir.join(to));
            }
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} → {}: {e}", from.display(), to.display()));
    }
}

pub fn config_check(env: &BTreeMap<String, String>) -> Result<(), String> {
    let out = slate(env, &["config", "check"]);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// `slate config show` (file + env + defaults, secrets redacted) of every slate service whose
/// config is valid (the others fail `config check`, and `problems` in tests/compose.rs names them).
pub fn effective(c: &Compose) -> BTreeMap<String, toml::Table> {
    slate_services(c)
        .into_iter()
        .filter_map(|(name, s)| {
            let out = slate(&env_of(name, s), &["config", "show"]);
            let text = String::from_utf8(out.stdout).expect("utf-8");
            out.status
                .success()
                .then(|| (name.clone(), text.parse::<toml::Table>().unwrap_or_else(|e| panic!("config show of {name} is not TOML: {e}"))))
        })
        .collect()
}

/// A dotted key of an effective config, as a string (absent: unset optional key).
pub fn get(cfg: &toml::Table, key: &str) -> Option<String> {
    let mut parts = key.split('.');
    let mut v = cfg.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    if let Some(list) = v.as_array() {
        // A list of URLs (dashboard.metrics_urls): comma-joined, as `endpoints` reads it.
        return Some(list.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(","));
    }
    Some(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
}

/// (host, port) pairs a connection setting names: a `host:port` list or a URL.
pub fn endpoints(key: &str, value: &str) -> Result<Vec<(String, u16)>, String> {
    if key == "kafka.bootstrap_servers" {
        return value
            .split(',')
            .map(|hp| {
                let (h, p) = hp.trim().rsplit_once(':').ok_or_else(|| format!("{key}: '{hp}' is not host:port"))?;
                Ok((h.to_string(), p.parse().map_err(|_| format!("{key}: bad port in '{hp}'"))?))
            })
            .collect();
    }
    if key == "dashboard.metrics_urls" {
        return value.split(',').map(|u| endpoints("url", u.trim())).collect::<Result<Vec<_>, _>>().map(|v| v.concat());
    }
    let url = reqwest::Url::parse(value).map_err(|e| format!("{key}: '{value}' is not a URL ({e})"))?;
    let host = url.host_str().ok_or_else(|| format!("{key}: '{value}' has no host"))?.to_string();
    let port = url.port_or_known_default().or(matches!(url.scheme(), "postgres" | "postgresql").then_some(5432));
    Ok(vec![(host, port.ok_or_else(|| format!("{key}: '{value}' has no port"))?)])
}
