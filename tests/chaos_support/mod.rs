//! Parts of the chaos test: slate roles as real processes (SIGKILLed and restarted), a TCP proxy
//! that can cut a target away, and readers of what each sink and topic holds, written
//! independently of `slate verify`.
#![allow(dead_code)]

use crate::common::*;
use crate::enricher_support::version_of;
use apache_avro::Schema;
use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use slate::event::{ChangeEvent, EntityName};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on a loopback port. While cut, new connections are closed at once and open ones
/// are dropped, as a target that went away would look to its clients.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if *rx.borrow() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One slate role run as its own process (`slate run …`), configured by `SLATE_*` variables.
pub struct Role {
    pub name: &'static str,
    args: Vec<&'static str>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    pub starts: u32,
}

impl Role {
    pub fn new(name: &'static str, args: &[&'static str], env: Vec<(String, String)>, dir: &Path) -> Self {
        Self { name, args: args.to_vec(), env, log: dir.join(format!("{name}.log")), child: None, starts: 0 }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("role log");
        let mut cmd = tokio::process::Command::new(slate_bin());
        cmd.args(["--log", "warn,slate=info"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name)));
        self.starts += 1;
    }

    /// SIGKILL: no drain, no commit, the group member stays until its session times out.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Restarts a role that exited by itself (it must not: that is reported).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then up to 20 s for a clean stop.
    pub async fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(20), c.wait()).await.is_err() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The binary the roles run: `TEST_CHAOS_SLATE_BIN` (e.g. an older build, to show a defect),
/// else this checkout's.
pub fn slate_bin() -> String {
    std::env::var("TEST_CHAOS_SLATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_slate").to_string())
}

/// A published change event, as read back from a change topic.
#[derive(Debug, Clone)]
pub struct Published {
    pub uuid: String,
    pub entity: EntityName,
    pub id: String,
}

/// Every message of the change topics: the decodable events and how many were not.
pub fn published(prefix: &str, partitions: i32) -> (Vec<Published>, usize) {
    published_on(&Reader::test_broker(), prefix, partitions)
}

pub fn published_on(from: &Reader, prefix: &str, partitions: i32) -> (Vec<Published>, usize) {
    let (mut events, mut poison) = (Vec::new(), 0);
    for kind in slate::studio::kind::ALL {
        for (key, payload, _) in read_all_on(from, &kind.changes_topic(prefix), partitions) {
            match payload.as_deref().map(|p| ChangeEvent::decode_json(p, Some(&key), Some(kind))) {
                Some(Ok(e)) if e.entity == kind => events.push(Published { uuid: e.uuid.to_string(), entity: kind, id: e.id }),
                _ => poison += 1,
            }
        }
    }
    (events, poison)
}

/// How many enriched messages carry each event uuid (one audit row is owed per delivery).
pub fn deliveries(output_prefix: &str, partitions: i32) -> HashMap<String, usize> {
    deliveries_on(&Reader::test_broker(), output_prefix, partitions)
}

pub fn deliveries_on(from: &Reader, output_prefix: &str, partitions: i32) -> HashMap<String, usize> {
    let mut out: HashMap<String, usize> = HashMap::new();
    for kind in slate::studio::kind::ALL {
        let schema = slate::catalogue::Catalogue::example(kind).schema.clone();
        for (_, payload, headers) in read_all_on(from, &format!("{output_prefix}{}.enriched", kind.as_str()), partitions) {
            let uuids: Vec<String> = match payload {
                None => headers
                    .iter()
                    .find(|(k, _)| k == "slate-event-uuids")
                    .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
                Some(p) => coalesced_uuids(&schema, &p),
            };
            for u in uuids {
                *out.entry(u).or_default() += 1;
            }
        }
    }
    out
}

fn coalesced_uuids(schema: &Schema, payload: &[u8]) -> Vec<String> {
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut &payload[5..])
        .expect("enriched records are valid Avro");
    let Value::Record(fields) = value else { panic!("record expected") };
    let Some((_, Value::Record(meta))) = fields.iter().find(|(n, _)| n == "_meta") else { panic!("_meta expected") };
    let Some((_, Value::Array(items))) = meta.iter().find(|(n, _)| n == "coalesced_uuids") else { panic!("coalesced_uuids expected") };
    items
        .iter()
        .map(|v| match v {
            Value::Uuid(u) => u.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("uuid expected, got {other:?}"),
        })
        .collect()
}

/// `id → (version, deleted)` of each entity table in PostgreSQL.
pub async fn sql_state(db_url: &str) -> BTreeMap<EntityName, HashMap<String, (i64, bool)>> {
    use sqlx::Row;
    let pool = sqlx::PgPool::connect(db_url).await.expect("connect to the sink's database");
    let mut out = BTreeMap::new();
    for kind in slate::studio::kind::ALL {
        let q = format!("SELECT id, version, deleted FROM {}", kind.as_str());
        let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&pool).await.unwrap_or_default();
        out.insert(
            kind,
            rows.iter().map(|r| (r.get::<String, _>("id"), (r.get::<i64, _>("version"), r.get::<bool, _>("deleted")))).collect(),
        );
    }
    pool.close().await;
    out
}

/// `id → version` of each entity index in the search target (after a refresh).
pub async fn search_state(es_url: &str, index_prefix: &str) -> BTreeMap<EntityName, HashMap<String, i64>> {
    let http = reqwest::Client::new();
    let _ = http.post(format!("{es_url}/{index_prefix}*/_refresh")).send().await;
    let mut out = BTreeMap::new();
    for kind in slate::studio::kind::ALL {
        let body = serde_json::json!({ "size": 10000, "query": { "match_all": {} } });
        let resp = http.post(format!("{es_url}/{index_prefix}{}/_search", kind.as_str())).json(&body).send().await.expect("search");
        let reply: serde_json::Value = if resp.status().is_success() { resp.json().await.expect("json") } else { serde_json::json!({}) };
        let docs = reply["hits"]["hits"]
            .as_array()
            .map(|hits| hits.iter().filter_map(|h| Some((h["_id"].as_str()?.to_string(), h["_source"]["version"].as_i64()?))).collect())
            .unwrap_or_default();
        out.insert(kind, docs);
    }
    out
}

/// `event_uuid → rows` in the audit tree, read with DuckDB as an analyst would.
pub async fn audit_rows(dir: &Path) -> HashMap<String, usize> {
    if walk_parquet(dir) == 0 {
        return HashMap::new();
    }
    let sql = format!("SELECT event_uuid, count(*) FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) GROUP BY 1", dir.display());
    let script = format!("import duckdb, json; print(json.dumps(duckdb.sql({sql:?}).fetchall()))");
    let (ok, out, err) = run_command(tokio::process::Command::new(env("TEST_PYTHON")).args(["-c", &script]), Duration::from_secs(60)).await;
    assert!(ok, "duckdb failed: {err}");
    let rows: Vec<(String, usize)> = serde_json::from_str(out.trim()).expect("duckdb json");
    rows.into_iter().collect()
}

fn walk_parquet(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walk_parquet(&p) } else { usize::from(p.extension().is_some_and(|x| x == "parquet")) }
        })
        .sum()
}

/// `topic[p] committed/end` of a group on `topics`: a group whose committed offsets reached the
/// end while a sink lacks data lost it; one behind is stuck.
pub fn group_progress(group: &str, topics: &[String], partitions: i32) -> Vec<(String, i32, i64, i64)> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition(t, p);
        }
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let end = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10)).map(|(_, h)| h).unwrap_or(-1);
            (e.topic().to_string(), e.partition(), e.offset().to_raw().unwrap_or(-1), end)
        })
        .collect()
}

/// A role with a fixed metrics port, so the test can ask it what it owns.
pub struct Member {
    pub role: Role,
    pub port: u16,
}

/// A free port for a process that is restarted on it: below Linux's ephemeral range
/// (32768–60999), which outgoing connections draw from. A port from that range, free when
/// chosen, was taken by a Kafka client's connection while its member was down (CI saw the
/// restart fail with "Address already in use").
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn member(name: &'static str, args: &[&'static str], vars: &[(String, String)], listen_key: &str, dir: &std::path::Path) -> Member {
    let port = free_port();
    let mut env = vars.to_vec();
    env.push((listen_key.to_string(), format!("127.0.0.1:{port}")));
    Member { role: Role::new(name, args, env, dir), port }
}

/// A gauge of `group` on this member's own `/metrics` (None: not serving it).
pub async fn gauge(http: &reqwest::Client, port: u16, name: &str, group: &str) -> Option<f64> {
    let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?.text().await.ok()?;
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

/// The partitions of `group` this member holds now.
pub async fn assigned(http: &reqwest::Client, port: u16, group: &str) -> Option<i64> {
    gauge(http, port, "slate_consumer_assigned_partitions", group).await.map(|v| v as i64)
}

/// Waits until the live `members` together hold all `partitions` of `group`, each at least one.
pub async fn balanced(http: &reqwest::Client, group: &str, partitions: i64, members: &mut [&mut Member], step: &str) {
    let started = Instant::now();
    loop {
        let mut counts = Vec::new();
        for m in members.iter_mut() {
            if let Some(status) = m.role.exited() {
                panic!("{step}: {} exited by itself ({status}):\n{}", m.role.name, m.role.log_tail(40));
            }
            counts.push(assigned(http, m.port, group).await.unwrap_or(-1));
        }
        if counts.iter().all(|c| *c > 0) && counts.iter().sum::<i64>() == partitions {
            println!("{step}: {group} = {counts:?} after {:?}", started.elapsed());
            return;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let logs: Vec<String> = members.iter().map(|m| format!("--- {}:\n{}", m.role.name, m.role.log_tail(30))).collect();
            panic!("{step}: {group} not spread over {} members within 90s: {counts:?}\n{}", members.len(), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Reads every enriched topic in order and lists the keys whose record versions decrease.
pub fn versions_never_go_back(cfg: &slate::config::Config, partitions: i32) -> (usize, Vec<String>) {
    let (mut records, mut backwards) = (0, Vec::new());
    for kind in slate::studio::kind::ALL {
        let schema = slate::catalogue::Catalogue::example(kind).schema.clone();
        let mut newest: BTreeMap<(EntityName, Vec<u8>), i64> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        for (key, payload, _) in read_all(&cfg.enricher.output_topic(kind), partitions) {
            let Some(payload) = payload else { continue };
            records += 1;
            let version = version_of(&schema, &payload);
            let last = newest.entry((kind, key.clone())).or_insert(version);
            if version < *last && reported.insert(key.clone()) {
                backwards.push(format!("{kind} {}: v{last} then v{version}", String::from_utf8_lossy(&key)));
            }
            *last = (*last).max(version);
        }
    }
    (records, backwards)
}

/// The `SLATE_*` variables of a `slate run enricher` process for `cfg` (its group, topics,
/// registry) on the broker `bootstrap`, fetching from `graphql`; `extra` pairs (keys without
/// the `SLATE_` prefix) come after, so they win.
pub fn enricher_env(cfg: &slate::config::Config, bootstrap: &str, graphql: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let e = &cfg.enricher;
    let common = [
        ("KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_string()),
        ("KAFKA__CONSUMER__SESSION_TIMEOUT", "6s".into()),
        ("REGISTRY__URL", cfg.registry.url.clone()),
        ("SOURCES__GRAPHQL_ENDPOINT", graphql.to_string()),
        ("ENRICHER__GROUP_ID", e.group_id.clone()),
        ("ENRICHER__INPUT_TOPIC_PREFIX", e.input_topic_prefix.clone()),
        ("ENRICHER__OUTPUT_TOPIC_PREFIX", e.output_topic_prefix.clone()),
        ("ENRICHER__RETRY_TOPIC", e.retry_topic.clone()),
        ("ENRICHER__DLQ_TOPIC", e.dlq_topic.clone()),
        ("ENRICHER__TOPIC_PARTITIONS", e.topic_partitions.to_string()),
        ("ENRICHER__BATCH_MAX_WAIT", "20ms".into()),
    ];
    common.into_iter().chain(extra.iter().cloned()).map(|(k, v)| (format!("SLATE_{k}"), v)).collect()
}

/// What [`assert_nothing_lost_or_reordered`] read.
pub struct Audit {
    pub events: usize,
    pub records: usize,
    /// Published events delivered more than once (at-least-once across owner changes).
    pub redelivered: usize,
}

/// Asserts that every event published on `cfg`'s change topics reached an enriched topic and
/// that, read in order, no key's version goes back on an enriched topic.
pub async fn assert_nothing_lost_or_reordered(cfg: &slate::config::Config, partitions: i32) -> Audit {
    let (prefix, out) = (cfg.studio.topic_prefix.clone(), cfg.enricher.output_topic_prefix.clone());
    let (events, poison) = tokio::task::spawn_blocking(move || published(&prefix, partitions)).await.unwrap();
    assert_eq!(poison, 0, "the studio publishes only valid events");
    let delivered = tokio::task::spawn_blocking(move || deliveries(&out, partitions)).await.unwrap();
    let lost: Vec<&Published> = events.iter().filter(|e| !delivered.contains_key(&e.uuid)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} published events never reached an enriched topic, e.g. {:?}",
        lost.len(),
        events.len(),
        &lost[..lost.len().min(5)]
    );
    let published_uuids: std::collections::HashSet<&str> = events.iter().map(|e| e.uuid.as_str()).collect();
    let redelivered = delivered.iter().filter(|(u, n)| published_uuids.contains(u.as_str()) && **n > 1).count();
    let c = cfg.clone();
    let (records, backwards) = tokio::task::spawn_blocking(move || versions_never_go_back(&c, partitions)).await.unwrap();
    assert!(
        backwards.is_empty(),
        "{} keys went back to an older version on an enriched topic: {:?}",
        backwards.len(),
        &backwards[..backwards.len().min(10)]
    );
    Audit { events: events.len(), records, redelivered }
}
