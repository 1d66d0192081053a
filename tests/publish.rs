//! The producer side (`slate::publish`): `slate publish` from a script, `POST /events` over HTTP,
//! healthy-partition publishing for unordered entities, and a broker that goes down and comes
//! back while events are published (noida-db, which keeps its data across a clean restart):
//! refused input is never queued, every acknowledged event is on the topic, every other one was
//! reported to its caller.
//! Run through `tests/run` (TEST_KAFKA_BOOTSTRAP, TEST_NOIDA_BIN).

mod common;

use common::*;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use slate::config::Config;
use slate::event::ChangeEvent;
use slate::metrics::Metrics;
use slate::publish::{Publisher, ingest};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;

/// A config publishing to fresh topics on `bootstrap`, with `extra` overrides.
async fn config(bootstrap: &str, extra: &[slate::config::Override]) -> Config {
    let mut o = vec![
        ov("kafka.bootstrap_servers", format!("\"{bootstrap}\"")),
        ov("enricher.input_topic_prefix", format!("\"{}.\"", unique("pub"))),
        ov("enricher.topic_partitions", PARTITIONS),
    ];
    o.extend_from_slice(extra);
    let cfg = Config::load(None, &o).expect("test config is valid");
    let topics = cfg.enricher.input_topics(cfg.entities());
    slate::kafka::ensure_topics(&cfg.kafka, &topics, PARTITIONS, 1).await.expect("create the change topics");
    cfg
}

/// (partition, key, event) of every message on `topic` of `bootstrap`, up to each partition's end.
fn read_events(bootstrap: &str, topic: &str) -> Vec<(i32, String, ChangeEvent)> {
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut at_end, mut out) = (HashSet::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < PARTITIONS as usize && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                let event = ChangeEvent::decode_json(m.payload().unwrap(), None, None).expect("a published event decodes");
                out.push((m.partition(), key, event));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {}
        }
    }
    assert_eq!(at_end.len(), PARTITIONS as usize, "read {topic} to its end within 30 s");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_valid_lines_and_names_each_refused_one() {
    let cfg = config(&kafka_bootstrap(), &[]).await;
    let dir = TempDir(std::env::temp_dir().join(unique("slate-publish")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let lines = [
        json!({"type": "UPDATE", "entity": "budget", "id": "b-1"}).to_string(),
        "{not json".to_string(),
        json!({"type": "UPDATE", "entity": "invoice_never_declared", "id": "x"}).to_string(),
        json!({"type": "UPDATE", "entity": "budget", "id": "b-2", "trace": "x".repeat(70_000)}).to_string(),
        json!({"uuid": "8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11", "type": "DELETE", "ts": 1_700_000_000_000_i64, "entity": "budgets", "id": "b-3"})
            .to_string(),
        json!({"type": "UPDATE", "entity": "budget", "id": ""}).to_string(),
        json!({"type": "UPDATE", "entity": "budget", "id": "b-4", "colour": "red"}).to_string(),
    ];
    let file = dir.0.join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let env = [
        ("SLATE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap()),
        ("SLATE_ENRICHER__INPUT_TOPIC_PREFIX", cfg.enricher.input_topic_prefix.clone()),
    ];
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    cmd.arg("publish").arg("--file").arg(&file).envs(env.clone());
    let (ok, stdout, stderr) = run_command(&mut cmd, Duration::from_secs(60)).await;
    assert!(!ok, "refused lines make the exit status 1:\n{stderr}");
    for expected in [
        "line 2: refused: not a change event",
        "line 3: refused: unknown entity `invoice_never_declared`: the catalogue declares",
        "line 4: refused: event of",
        "line 6: refused: field `id` is empty",
        "line 7: refused: not a change event: unknown field `colour`",
        "published 2, refused 5, failed 0",
    ] {
        assert!(stderr.contains(expected), "stderr names {expected:?}:\n{stderr}");
    }
    let acks: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("an ack per line")).collect();
    assert_eq!(acks.len(), 2, "{stdout}");
    assert_eq!(acks[1]["uuid"], "8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11", "a given uuid is kept");

    let topic = format!("{}budget.changes", cfg.enricher.input_topic_prefix);
    let on_topic = read_events(&kafka_bootstrap(), &topic);
    let mut ids: Vec<(&str, &str)> = on_topic.iter().map(|(_, key, e)| (key.as_str(), e.id.as_str())).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![("b-1", "b-1"), ("b-3", "b-3")], "exactly the valid lines reached the topic, keyed by id");
    let deleted = on_topic.iter().find(|(_, _, e)| e.id == "b-3").unwrap();
    assert_eq!((deleted.2.change_type.as_str(), deleted.2.ts), ("DELETE", 1_700_000_000_000));
    for ack in &acks {
        let p = on_topic.iter().find(|(_, _, e)| e.uuid.to_string() == ack["uuid"].as_str().unwrap()).expect("acked uuid is on the topic");
        assert_eq!(i64::from(p.0), ack["partition"].as_i64().unwrap(), "the ack names the partition");
    }

    // One event from flags.
    let mut one = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    one.args(["publish", "--entity", "budget", "--id", "b-9", "--type", "CREATE"]).envs(env);
    let (ok, stdout, stderr) = run_command(&mut one, Duration::from_secs(60)).await;
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(stdout.trim()).unwrap()["topic"], topic);
}

/// An ingest server over a publisher of `cfg`, on a loopback port.
struct Ingest {
    base: String,
    metrics: Metrics,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn ingest(cfg: &Config, token: Option<&str>) -> Ingest {
    let metrics = Metrics::new();
    let publisher = Arc::new(Publisher::new(cfg, metrics.clone()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingest::router(publisher, metrics.clone(), cfg.publish.max_request_events, token);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ingest::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Ingest { base, metrics, stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_events_answers_once_the_broker_has_them_and_refuses_bad_batches_whole() {
    let cfg = config(&kafka_bootstrap(), &[ov("publish.max_request_events", 50)]).await;
    let server = ingest(&cfg, Some("s3cret-token")).await;
    let http = reqwest::Client::new();
    let post = |body: String, token: Option<&'static str>| {
        let mut r = http.post(format!("{}/events", server.base)).header("content-type", "application/json").body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let response = r.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let token = Some("s3cret-token");
    let event = |id: &str| json!({"type": "UPDATE", "entity": "payment", "id": id});

    let (status, _) = post(event("p-1").to_string(), None).await;
    assert_eq!(status, 401, "the bearer token is required");
    let (status, body) = post(event("p-1").to_string(), token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acks"].as_array().unwrap().len(), 1);

    // One bad event refuses the whole batch: nothing of it is published.
    let mixed =
        json!([event("p-2"), {"type": "UPDATE", "entity": "payment"}, event("p-3"), {"type": "MERGE", "entity": "payment", "id": "p-4"}]);
    let (status, body) = post(mixed.to_string(), token).await;
    assert_eq!(status, 422, "{body}");
    let refused: Vec<(u64, String)> = body["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["message"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3], "{body}");
    assert!(refused[0].1.contains("missing field `id`"), "{refused:?}");
    assert!(refused[1].1.contains("MERGE"), "{refused:?}");
    assert_eq!(post("[1, 2".into(), token).await.0, 400);
    assert_eq!(post("[]".into(), token).await.0, 422);
    let too_many: Vec<Value> = (0..51).map(|i| event(&format!("p-{i}"))).collect();
    assert_eq!(post(json!(too_many).to_string(), token).await.0, 413);

    // A batch: ten events of one id, keyed by it, land on one partition in order.
    let same_id: Vec<Value> = (0..10).map(|_| event("p-7")).collect();
    let (status, body) = post(json!(same_id).to_string(), token).await;
    assert_eq!(status, 200, "{body}");
    let acked: Vec<String> = body["acks"].as_array().unwrap().iter().map(|a| a["uuid"].as_str().unwrap().to_owned()).collect();

    let topic = format!("{}payment.changes", cfg.enricher.input_topic_prefix);
    let on_topic = read_events(&kafka_bootstrap(), &topic);
    assert_eq!(on_topic.len(), 11, "p-1 and the ten p-7: nothing of the refused batches");
    let p7: Vec<&(i32, String, ChangeEvent)> = on_topic.iter().filter(|(_, k, _)| k == "p-7").collect();
    assert_eq!(p7.iter().map(|(p, _, _)| *p).collect::<HashSet<_>>().len(), 1, "one id, one partition");
    assert_eq!(p7.iter().map(|(_, _, e)| e.uuid.to_string()).collect::<Vec<_>>(), acked, "in the order posted");
    assert_eq!(metric_sum(&server.metrics, "slate_publish_refused_total"), 2.0, "the two refused events are counted");
    assert_eq!(metric_sum(&server.metrics, "slate_publish_events_total"), 11.0);
    let worst = f64::from(cfg.kafka.producer.buffer_max_messages) * slate::event::MAX_EVENT_BYTES as f64;
    assert_eq!(metric_sum(&server.metrics, "slate_publish_max_buffered_bytes"), worst, "the worst case held in memory is exported");
    let health = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(health.status(), 200, "/health needs no token");
    let _ = server.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_entities_go_round_robin_over_healthy_partitions_keyed_ones_stay_on_theirs() {
    let cfg = config(&kafka_bootstrap(), &[ov("publish.unordered_entities", "[\"talent\"]")]).await;
    let metrics = Metrics::new();
    let publisher = Publisher::new(&cfg, metrics.clone()).unwrap();
    let events: Vec<ChangeEvent> = ["talent", "schedule"]
        .iter()
        .flat_map(|entity| (0..30).map(move |_| json!({"type": "UPDATE", "entity": entity, "id": "same-id"}).to_string()))
        .map(|raw| publisher.parse(raw.as_bytes()).unwrap())
        .collect();
    for outcome in publisher.publish(&events).await {
        outcome.expect("acknowledged");
    }
    let spread = |entity: &str| -> BTreeMap<i32, usize> {
        let topic = format!("{}{entity}.changes", cfg.enricher.input_topic_prefix);
        let mut per_partition = BTreeMap::new();
        for (p, key, _) in read_events(&kafka_bootstrap(), &topic) {
            assert_eq!(key, "same-id", "unordered events are still keyed by id");
            *per_partition.entry(p).or_insert(0) += 1;
        }
        per_partition
    };
    assert_eq!(spread("talent"), BTreeMap::from([(0, 10), (1, 10), (2, 10)]), "round robin over the three healthy partitions");
    assert_eq!(spread("schedule").len(), 1, "a keyed entity keeps one id on one partition");
    let skipped = metric_sum(&metrics, "slate_publish_partitions_skipped{");
    assert_eq!(skipped, 0.0, "a single-broker topic has no unhealthy partition");
    assert!(metrics.encode().contains("slate_publish_partitions_skipped{topic="), "the gauge is exported for the unordered topic");
}

/// A broker down while events are published: each POST answers 200 (all durable) or 503 naming
/// the events to retry; retrying them until acknowledged, every event arrives, and what was
/// acknowledged before the outage survived the restart. (noida-db keeps its data across a clean
/// stop only, so the broker is stopped with SIGTERM: a SIGKILLed noida loses what it had
/// acknowledged, which is the broker's durability, not the publisher's — on Kafka, replication.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_fails_posts_visibly_and_after_retries_every_event_arrives() {
    let mut noida = Noida::start().await;
    let cfg = config(&noida.bootstrap, &[ov("kafka.producer.message_timeout", "\"3s\"")]).await;
    let server = ingest(&cfg, None).await;
    let http = reqwest::Client::new();
    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 25;
    let mut acked = HashSet::new();
    let (mut answered_503, mut retried) = (0, 0);
    for round in 0..ROUNDS {
        // Rounds 4 and 8 post into a stopped broker; it comes back once the caller saw the 503.
        let mut down = round == 4 || round == 8;
        if down {
            noida.stop().await;
        }
        let mut pending: Vec<Value> = (0..PER_ROUND)
            .map(|i| json!({"uuid": uuid::Uuid::new_v4(), "type": "UPDATE", "entity": "budget", "id": format!("b-{round}-{i}")}))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "round {round}: not acknowledged within 90 s");
            let response = http.post(format!("{}/events", server.base)).json(&pending).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            for ack in body["acks"].as_array().into_iter().flatten() {
                acked.insert(ack["uuid"].as_str().unwrap().to_owned());
            }
            match status {
                200 => pending.clear(),
                503 => {
                    answered_503 += 1;
                    let failed: HashSet<usize> =
                        body["failed"].as_array().unwrap().iter().map(|f| f["index"].as_u64().unwrap() as usize).collect();
                    assert!(!failed.is_empty(), "a 503 names what failed: {body}");
                    pending = pending.into_iter().enumerate().filter(|(i, _)| failed.contains(i)).map(|(_, e)| e).collect();
                    retried += pending.len();
                    if down {
                        noida.restart().await;
                        down = false;
                    }
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(!down, "round {round}: a post into a stopped broker was acknowledged");
    }
    assert!(answered_503 > 0, "the outage was visible to the caller");
    assert_eq!(acked.len(), ROUNDS * PER_ROUND, "every event was eventually acknowledged");
    let topic = format!("{}budget.changes", cfg.enricher.input_topic_prefix);
    let on_topic: HashSet<String> = read_events(&noida.bootstrap, &topic).into_iter().map(|(_, _, e)| e.uuid.to_string()).collect();
    let missing: Vec<&String> = acked.iter().filter(|u| !on_topic.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not on the topic after two restarts, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(metric_sum(&server.metrics, "slate_publish_failed_total"), retried as f64, "every failure was counted");
    assert!(metric_sum(&server.metrics, "slate_publish_producer_restarts_total") >= 2.0, "each outage replaced the timed-out producer");
    println!(
        "{} events published through 2 broker restarts: {} acknowledged, all {} on the topic; {answered_503} answers were 503, {retried} events retried",
        ROUNDS * PER_ROUND,
        acked.len(),
        on_topic.len()
    );
    let _ = server.stop.send(());
}
