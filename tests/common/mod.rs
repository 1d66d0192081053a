//! Shared helpers of the integration tests. Services come from `tests/run` through `TEST_*`
//! environment variables; a missing variable fails the test (it never skips silently).
#![allow(dead_code)]

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use slate::config::{Config, Override};
use std::time::{Duration, Instant};

pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the integration tests through `tests/run`, which starts the services they need"))
}

pub fn kafka_bootstrap() -> String {
    env("TEST_KAFKA_BOOTSTRAP")
}

/// A prefix unique to one test, so topics never collide between tests or runs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub fn ov(key: &str, value: impl ToString) -> Override {
    Override { key: key.into(), value: value.to_string(), origin: "test".into() }
}

/// A studio config on the test broker with loopback listeners on free ports and its own topics.
pub fn studio_config(extra: &[Override]) -> Config {
    let mut o = vec![
        ov("kafka.bootstrap_servers", format!("\"{}\"", kafka_bootstrap())),
        ov("studio.http_listen", "\"127.0.0.1:0\""),
        ov("studio.grpc_listen", "\"127.0.0.1:0\""),
        ov("studio.topic_prefix", format!("\"{}.\"", unique("it"))),
        ov("studio.num_productions", 5),
        ov("studio.topic_partitions", 2),
    ];
    o.extend_from_slice(extra);
    Config::load(None, &o).expect("test config is valid")
}

/// A consumer reading `topic` from the beginning without a consumer group rebalance.
pub fn reader(topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// (key, payload) of the first `n` messages of `topic`, or a panic naming what arrived in time.
pub fn read_n(topic: &str, partitions: i32, n: usize, within: Duration) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let consumer = reader(topic, partitions);
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((m.key().unwrap_or_default().to_vec(), m.payload().map(<[u8]>::to_vec))),
            Some(Err(e)) => panic!("consume from {topic} failed: {e}"),
            None => {}
        }
    }
    assert_eq!(out.len(), n, "expected {n} messages on {topic} within {within:?}, got {}", out.len());
    out
}

/// The sum of the series of `metrics` whose line starts with `prefix`: a whole family
/// (`slate_publish_refused_total`) or one labelled series (`…_total{to="standby"}`).
pub fn metric_sum(metrics: &slate::metrics::Metrics, prefix: &str) -> f64 {
    metrics.encode().lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Runs a command to completion with a time bound, returning (status ok, stdout, stderr).
pub async fn run_command(cmd: &mut tokio::process::Command, within: Duration) -> (bool, String, String) {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {within:?}"))
        .expect("command starts");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub async fn graphql(http: &reqwest::Client, addr: std::net::SocketAddr, query: &str) -> serde_json::Value {
    let body = serde_json::json!({ "query": query });
    http.post(format!("http://{addr}/graphql")).json(&body).send().await.expect("graphql request").json().await.expect("graphql json")
}

/// Every message of `topic` up to the end of each partition (partition EOF), as
/// (key, payload, headers). A broker may report the end early; convergence checks re-read.
/// (key, payload, headers) of one message.
pub type Record = (Vec<u8>, Option<Vec<u8>>, Vec<(String, String)>);

pub fn read_all(topic: &str, partitions: i32) -> Vec<Record> {
    read_all_on(&Reader::test_broker(), topic, partitions)
}

/// Which broker a reader reads, and whether it sees aborted transactions.
#[derive(Clone, Debug)]
pub struct Reader {
    pub bootstrap: String,
    /// librdkafka's `isolation.level`: `read_committed` (its default) or `read_uncommitted`.
    pub isolation: &'static str,
}

impl Reader {
    pub fn test_broker() -> Self {
        Self { bootstrap: kafka_bootstrap(), isolation: "read_committed" }
    }
}

/// [`read_all`] on a given broker and isolation level.
pub fn read_all_on(from: &Reader, topic: &str, partitions: i32) -> Vec<Record> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &from.bootstrap)
        .set("isolation.level", from.isolation)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    let hard_stop = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions as usize && Instant::now() < hard_stop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect()
                    })
                    .unwrap_or_default();
                out.push((m.key().unwrap_or_default().to_vec(), m.payload().map(<[u8]>::to_vec), headers));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consume from {topic} failed: {e}"),
            None => {}
        }
    }
    out
}

/// Polls `probe` every 300 ms until it answers `Some`; fails naming `what` after `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not reached within {within:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Registers `schema` under `subject` over plain HTTP, as any schema owner's tool would.
pub async fn register(registry: &str, subject: &str, schema: &serde_json::Value) -> u64 {
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{registry}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema.to_string() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["id"].as_u64().unwrap_or_else(|| panic!("registered {subject}: {reply}"))
}

/// A running in-memory schema registry on a loopback port.
pub struct TestRegistry {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestRegistry {
    pub async fn start() -> Self {
        Self::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// Serves on `listener` (a port a test chose first, e.g. to start the registry late).
    pub fn on(listener: tokio::net::TcpListener) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state =
            slate::registry::RegistryState::new(slate::registry::MemoryStore::new(), slate::registry::CompatibilityLevel::Backward, None);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            slate::registry::serve(listener, state, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self { url, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs `scenario` with the url of a fresh PostgreSQL database (named `<prefix>_<random>`) on
/// `TEST_DATABASE_URL`, then drops it, also when the scenario panics.
pub async fn with_pg_database<F, Fut>(prefix: &str, scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
    let admin_url = env("TEST_DATABASE_URL");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect to TEST_DATABASE_URL");
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
    let mut url = reqwest::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a url");
    url.set_path(&name);
    let outcome = tokio::spawn(scenario(url.to_string())).await;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.expect("drop test database");
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// noida-db's Kafka API on a free loopback port, stopped (by its PID) on drop. Its data dir
/// persists across [`Noida::stop`] and [`Noida::restart`] (same port, same data).
pub struct Noida {
    child: tokio::process::Child,
    pub bootstrap: String,
    port: u16,
    dir: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

impl Noida {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = TempDir(std::env::temp_dir().join(unique("noida-kafka")));
        std::fs::create_dir_all(&dir.0).unwrap();
        let child = Self::spawn(port, &dir.0).await;
        Self { child, bootstrap: format!("127.0.0.1:{port}"), port, dir }
    }

    async fn spawn(port: u16, dir: &std::path::Path) -> tokio::process::Child {
        let child = tokio::process::Command::new(env("TEST_NOIDA_BIN"))
            .args(["start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", &port.to_string(), "--data-dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("noida-db starts");
        until("noida-db accepts connections", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        child
    }

    /// SIGKILLs the broker and waits until it is gone (a crash: nothing flushed on the way out).
    pub async fn kill(&mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }

    /// SIGTERM, and waits until the broker has stopped (it writes its data out on the way).
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_err() {
            self.kill().await;
        }
    }

    /// Starts the broker again on the same port and data dir.
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir.0).await;
    }
}

impl Drop for Noida {
    fn drop(&mut self) {
        self.child.start_kill().ok();
    }
}
