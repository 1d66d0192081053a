//! The fetchers against the real studio, in process (no Kafka): GraphQL and gRPC return the
//! same replies, byte-identical once encoded as Avro, and failures classify as transient or
//! permanent as the enricher's retry policy expects.

use slate::config::{Config, EntitySourceConfig, FaultConfig, Protocol, SourcesConfig};
use slate::enrich::avro::{Meta, encode, to_record};
use slate::enrich::fetch::{Fetch, FetchError, FetchReply, Sources};
use slate::event::{ChangeType, EntityName};
use slate::metrics::Metrics;
use slate::studio::server::RunningStudio;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Upper bound of every wait in this file.
const WITHIN: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WITHIN, f).await.unwrap_or_else(|_| panic!("{what} did not finish within {WITHIN:?}"))
}

async fn studio(faults: FaultConfig) -> RunningStudio {
    let mut cfg = Config::default();
    cfg.studio.publish = false;
    cfg.studio.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.studio.grpc_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.studio.num_productions = 5;
    cfg.studio.faults = faults;
    bounded("studio start", slate::studio::server::start(&cfg, Metrics::new())).await.expect("studio starts")
}

fn sources_config(protocol: Protocol, http: SocketAddr, grpc: SocketAddr) -> SourcesConfig {
    SourcesConfig {
        protocol,
        graphql_endpoint: format!("http://{http}/graphql"),
        grpc_endpoint: format!("http://{grpc}"),
        timeout: Duration::from_secs(5),
        ..SourcesConfig::default()
    }
}

fn sources(protocol: Protocol, studio: &RunningStudio) -> Sources {
    Sources::try_new(&sources_config(protocol, studio.http_addr, studio.grpc_addr), &slate::catalogue::Catalogue::built_in())
        .expect("sources build")
}

fn with_entity(mut cfg: SourcesConfig, kind: EntityName, entity: EntitySourceConfig) -> Sources {
    cfg.entities = BTreeMap::from([(kind.to_string(), entity)]);
    Sources::try_new(&cfg, &slate::catalogue::Catalogue::built_in()).expect("sources build")
}

async fn fetch(sources: &Sources, kind: EntityName, ids: &[String]) -> Result<FetchReply, FetchError> {
    bounded("fetch", sources.fetch(kind, ids)).await
}

fn encoded(kind: EntityName, reply: &FetchReply) -> Vec<Vec<u8>> {
    let schema = slate::catalogue::Catalogue::example(kind).schema.clone();
    let meta = Meta {
        event_uuid: uuid::Uuid::from_u128(1),
        change_type: ChangeType::Update,
        event_ts: 1_700_000_000_000,
        fetched_at: 1_700_000_000_001,
        coalesced_uuids: vec![uuid::Uuid::from_u128(1)],
    };
    reply
        .found
        .iter()
        .map(|f| {
            let record = to_record(&schema, f, &meta).unwrap_or_else(|e| panic!("{kind} {}: {e}", f.id));
            encode(&schema, 7, record).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_and_grpc_return_the_same_current_state() {
    let studio = studio(FaultConfig::default()).await;
    let store = &studio.studio.store;
    // One deleted id of every entity: a production takes its budget, schedule and cash flow along.
    let production = store.list_ids(slate::studio::kind::PRODUCTION, None, 1).remove(0);
    let mut changes = store.delete_production(&production).unwrap();
    changes.extend(store.delete_talent(&store.list_ids(slate::studio::kind::TALENT, None, 1).remove(0)).unwrap());
    changes.extend(store.delete_payment(&store.list_ids(slate::studio::kind::PAYMENT, None, 1).remove(0)).unwrap());
    let (graphql, grpc) = (sources(Protocol::Graphql, &studio), sources(Protocol::Grpc, &studio));

    for kind in slate::studio::kind::ALL {
        let live = store.list_ids(kind, None, 3);
        assert_eq!(live.len(), 3, "{kind}: the seed has too few live ids");
        let delete = changes.iter().find(|c| c.entity == kind).unwrap_or_else(|| panic!("{kind}: nothing deleted"));
        let (tombstone, delete_version) = (delete.id.clone(), delete.version);
        // Request order mixes the three outcomes; replies follow it.
        let ids = vec![live[0].clone(), tombstone.clone(), format!("{kind}-unknown"), live[1].clone(), live[2].clone()];

        let by_graphql = fetch(&graphql, kind, &ids).await.unwrap_or_else(|e| panic!("{kind} over GraphQL: {e}"));
        let by_grpc = fetch(&grpc, kind, &ids).await.unwrap_or_else(|e| panic!("{kind} over gRPC: {e}"));
        assert_eq!(by_graphql, by_grpc, "{kind}: the protocols disagree");
        assert_eq!(by_graphql.found.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), [&live[0], &live[1], &live[2]], "{kind}");
        assert_eq!(by_graphql.deleted, vec![(tombstone, delete_version)], "{kind}");
        assert_eq!(by_graphql.missing, vec![format!("{kind}-unknown")], "{kind}");
        for f in &by_graphql.found {
            assert_eq!(Some(f.version), store.batch_get(kind, std::slice::from_ref(&f.id)).found.first().map(|r| r.1), "{kind} {}", f.id);
        }
        assert_eq!(encoded(kind, &by_graphql), encoded(kind, &by_grpc), "{kind}: Avro bytes differ");
    }
    studio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn studio_faults_are_transient() {
    let failing = studio(FaultConfig { error_rate: 1.0, ..FaultConfig::default() }).await;
    let ids = failing.studio.store.list_ids(slate::studio::kind::BUDGET, None, 2);
    for protocol in [Protocol::Graphql, Protocol::Grpc] {
        let err = fetch(&sources(protocol, &failing), slate::studio::kind::BUDGET, &ids).await.unwrap_err();
        assert!(matches!(err, FetchError::Unavailable(_)), "{protocol:?}: {err}");
    }
    failing.shutdown().await;

    let hanging = studio(FaultConfig { timeout_rate: 1.0, timeout_delay: Duration::from_secs(10), ..FaultConfig::default() }).await;
    let mut cfg = sources_config(Protocol::Graphql, hanging.http_addr, hanging.grpc_addr);
    cfg.timeout = Duration::from_millis(300);
    for protocol in [Protocol::Graphql, Protocol::Grpc] {
        cfg.protocol = protocol;
        let started = std::time::Instant::now();
        let err = fetch(&Sources::try_new(&cfg, &slate::catalogue::Catalogue::built_in()).unwrap(), slate::studio::kind::BUDGET, &ids)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{protocol:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{protocol:?}: the client timeout was not applied");
    }
    hanging.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_transient() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for protocol in [Protocol::Graphql, Protocol::Grpc] {
        let sources = Sources::try_new(&sources_config(protocol, closed, closed), &slate::catalogue::Catalogue::built_in()).unwrap();
        let err = fetch(&sources, slate::studio::kind::TALENT, &["tal-000001".to_string()]).await.unwrap_err();
        assert!(err.is_transient(), "{protocol:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn misconfigured_sources_fail_permanently() {
    let studio = studio(FaultConfig::default()).await;
    let ids = studio.studio.store.list_ids(slate::studio::kind::PAYMENT, None, 2);
    let base = sources_config(Protocol::Graphql, studio.http_addr, studio.grpc_addr);

    let wrong_field = EntitySourceConfig {
        query: Some("query($ids: [ID!]!) { items: payments(ids: $ids) { id version no_such_field } }".into()),
        ..EntitySourceConfig::default()
    };
    let err =
        fetch(&with_entity(base.clone(), slate::studio::kind::PAYMENT, wrong_field), slate::studio::kind::PAYMENT, &ids).await.unwrap_err();
    assert!(matches!(&err, FetchError::Rejected(m) if m.contains("no_such_field")), "{err}");

    let nowhere = EntitySourceConfig { response_path: Some("data.nowhere".into()), ..EntitySourceConfig::default() };
    let err =
        fetch(&with_entity(base.clone(), slate::studio::kind::PAYMENT, nowhere), slate::studio::kind::PAYMENT, &ids).await.unwrap_err();
    assert!(matches!(&err, FetchError::BadResponse(m) if m.contains("data.nowhere")), "{err}");

    // A custom query without tombstones is fine (deleted ids then read as missing)...
    let custom = EntitySourceConfig {
        query: Some(
            "query($ids: [ID!]!) { items: payments(ids: $ids) { id version production_id talent_id amount currency status due_date } }"
                .into(),
        ),
        ..EntitySourceConfig::default()
    };
    let reply =
        fetch(&with_entity(base.clone(), slate::studio::kind::PAYMENT, custom.clone()), slate::studio::kind::PAYMENT, &ids).await.unwrap();
    assert_eq!(reply.found.len(), 2);
    // ...unless a tombstones_path is configured and absent.
    let required = EntitySourceConfig { tombstones_path: Some("data.graves".into()), ..custom };
    let err =
        fetch(&with_entity(base.clone(), slate::studio::kind::PAYMENT, required), slate::studio::kind::PAYMENT, &ids).await.unwrap_err();
    assert!(matches!(err, FetchError::BadResponse(_)), "{err}");

    let mut grpc_base = base.clone();
    grpc_base.protocol = Protocol::Grpc;
    let other_method = EntitySourceConfig { grpc_method: Some("/other.v1.Source/BatchGet".into()), ..EntitySourceConfig::default() };
    let err =
        fetch(&with_entity(grpc_base, slate::studio::kind::PAYMENT, other_method), slate::studio::kind::PAYMENT, &ids).await.unwrap_err();
    assert!(matches!(&err, FetchError::Rejected(m) if m.contains("Unimplemented")), "{err}");

    let too_many: Vec<String> = (0..=slate::studio::MAX_IDS_PER_READ).map(|i| format!("pay-{i:06}")).collect();
    for protocol in [Protocol::Graphql, Protocol::Grpc] {
        let err = fetch(&sources(protocol, &studio), slate::studio::kind::PAYMENT, &too_many).await.unwrap_err();
        assert!(matches!(err, FetchError::Rejected(_)), "{protocol:?}: {err}");
    }
    studio.shutdown().await;
}

/// A one-response-per-connection HTTP server answering every request with `status` and `body`;
/// the request heads arrive on the returned channel.
async fn fake_graphql(status: u16, body: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // Read the whole request: closing with unread bytes would reset the connection.
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
                    if request.len() >= end + 4 + length.unwrap_or(0) {
                        break;
                    }
                }
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = heads.try_send(String::from_utf8_lossy(&request).to_ascii_lowercase());
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_answers_classify() {
    let ids = vec!["pay-000001".to_string()];
    type Case = (u16, &'static str, fn(&FetchError) -> bool);
    let cases: [Case; 6] = [
        (503, "{}", |e| matches!(e, FetchError::Unavailable(_))),
        (429, "{}", |e| matches!(e, FetchError::Unavailable(_))),
        (400, r#"{"errors":[{"message":"bad"}]}"#, |e| matches!(e, FetchError::Rejected(_))),
        (200, "<html>", |e| matches!(e, FetchError::BadResponse(_))),
        (200, r#"{"data":{"items":[{"id":"pay-999999","version":1}],"tombstones":[]}}"#, |e| matches!(e, FetchError::BadResponse(_))),
        (200, r#"{"data":{"items":[{"id":"pay-000001","version":"x"}],"tombstones":[]}}"#, |e| matches!(e, FetchError::BadResponse(_))),
    ];
    for (status, body, expected) in cases {
        let (addr, _) = fake_graphql(status, body).await;
        let err = fetch(
            &Sources::try_new(&sources_config(Protocol::Graphql, addr, addr), &slate::catalogue::Catalogue::built_in()).unwrap(),
            slate::studio::kind::PAYMENT,
            &ids,
        )
        .await
        .unwrap_err();
        assert!(expected(&err), "http {status} {body}: {err}");
    }

    let (addr, mut heads) = fake_graphql(200, r#"{"data":{"items":[{"id":"pay-000001","version":"3"}],"tombstones":[]}}"#).await;
    let mut cfg = sources_config(Protocol::Graphql, addr, addr);
    cfg.bearer_token = Some(slate::config::Secret::new("t0ken"));
    let reply = fetch(&Sources::try_new(&cfg, &slate::catalogue::Catalogue::built_in()).unwrap(), slate::studio::kind::PAYMENT, &ids)
        .await
        .unwrap();
    assert_eq!((reply.found[0].version, reply.missing.len()), (3, 0));
    let head = bounded("request head", heads.recv()).await.unwrap();
    assert!(head.contains("authorization: bearer t0ken"), "{head}");
}
