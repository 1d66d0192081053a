//! The analyst GraphQL API over HTTP, on databases the real SQL sinks built (SQLite temp files and
//! fresh PostgreSQL databases on `TEST_DATABASE_URL`) and an audit tree the real audit sink wrote:
//! the numbers, pagination, limits, history, bearer auth, connect errors and `slate run api`.

mod analyst_support;
mod common;
mod sink_support;

use analyst_support::*;
use common::*;
use serde_json::{Value as Json, json};
use slate::analyst::{Analyst, AnalystError};
use slate::config::{AuditSinkConfig, SecretUrl, SqlSinkConfig};
use slate::event::ChangeType;
use slate::sink::audit::AuditSink;
use slate::sink::sql::{SqlSink, SqliteSink};
use slate::sink::{Sink, SinkRecord};
use std::time::Duration;

fn sql_config(url: &str) -> SqlSinkConfig {
    let views = if url.starts_with("sqlite:") { "migrations/sqlite" } else { "migrations/sql" };
    SqlSinkConfig {
        database_url: SecretUrl::new(url),
        max_connections: 2,
        refresh_interval: Duration::ZERO,
        migrations: Some(views.into()),
        refresh_views: if url.starts_with("sqlite:") { vec![] } else { vec!["budget_vs_actuals".into()] },
    }
}

/// A SQLite database seeded through `SqliteSink` with `records`, and an (empty) audit dir.
async fn sqlite_with(records: &[SinkRecord]) -> (TempPath, TempPath) {
    let db = TempPath::new("slate-api-db");
    let sink = SqliteSink::connect(&sql_config(&db.sqlite_url()), &slate::catalogue::Catalogue::built_in()).await.expect("sqlite sink");
    if !records.is_empty() {
        sink.write(records).await.expect("seed");
    }
    sink.pool().close().await;
    (db, TempPath::new("slate-api-audit"))
}

const PRODUCTION_FIELDS: &str = "id title status currency budget paid pending projected remaining launchDate overBudget \
     committedOverBudget projectedOverBudget cashFlow { month amount cumulative }";

fn month(m: &str, amount: i64, cumulative: i64) -> Json {
    json!({"month": m, "amount": amount, "cumulative": cumulative})
}

/// Every number of the core seed (see `analyst_support::core_batch`), computed by hand.
async fn check_core_numbers(base: &str) {
    let d = data(base, &format!("{{ productions {{ totalCount pageInfo {{ hasNextPage }} nodes {{ {PRODUCTION_FIELDS} }} }} }}")).await;
    assert_eq!(d["productions"]["totalCount"], 3, "prod-d is deleted: {d}");
    assert_eq!(d["productions"]["pageInfo"]["hasNextPage"], false);
    let nodes = &d["productions"]["nodes"];
    assert_eq!(
        nodes[0],
        json!({"id": "prod-a", "title": "Title of prod-a", "status": "DEVELOPMENT", "currency": "USD", "budget": 1_000_000,
            "paid": 300_000, "pending": 250_000, "projected": 1_200_000, "remaining": 450_000, "launchDate": "2027-06-15",
            "overBudget": true, "committedOverBudget": -450_000, "projectedOverBudget": 200_000,
            "cashFlow": [month("2027-01-01", 400_000, 400_000), month("2027-02-01", 500_000, 900_000), month("2027-03-01", 300_000, 1_200_000)]})
    );
    assert_eq!(
        nodes[1],
        json!({"id": "prod-b", "title": "Title of prod-b", "status": "DEVELOPMENT", "currency": "USD", "budget": 500_000,
            "paid": 100_000, "pending": 0, "projected": 300_000, "remaining": 400_000, "launchDate": null,
            "overBudget": false, "committedOverBudget": -400_000, "projectedOverBudget": -200_000,
            "cashFlow": [month("2027-02-01", 200_000, 200_000), month("2027-04-01", 100_000, 300_000)]})
    );
    assert_eq!(
        nodes[2],
        json!({"id": "prod-c", "title": "Title of prod-c", "status": "RELEASED", "currency": "USD", "budget": null,
            "paid": 0, "pending": 7_000, "projected": null, "remaining": null, "launchDate": null,
            "overBudget": false, "committedOverBudget": null, "projectedOverBudget": null, "cashFlow": []})
    );

    // One production, resolved on its own (its cash flow is not prefetched by a page).
    let one = data(base, &format!("{{ production(id: \"prod-b\") {{ {PRODUCTION_FIELDS} }} }}")).await;
    assert_eq!(one["production"], nodes[1]);
    let unknown = data(base, "{ unknown: production(id: \"prod-zzz\") { id } deleted: production(id: \"prod-d\") { id } }").await;
    assert_eq!(unknown, json!({"unknown": null, "deleted": null}));

    let released = data(base, "{ productions(status: \"RELEASED\") { totalCount nodes { id } } }").await;
    assert_eq!(released["productions"], json!({"totalCount": 1, "nodes": [{"id": "prod-c"}]}));

    let over = data(
        base,
        "{ overBudget { totalCount pageInfo { hasNextPage } edges { node { id budget paid pending projected overBudget \
         committedOverBudget projectedOverBudget } } } }",
    )
    .await;
    assert_eq!(
        over["overBudget"],
        json!({"totalCount": 1, "pageInfo": {"hasNextPage": false}, "edges": [{"node": {"id": "prod-a", "budget": 1_000_000,
            "paid": 300_000, "pending": 250_000, "projected": 1_200_000, "overBudget": true,
            "committedOverBudget": -450_000, "projectedOverBudget": 200_000}}]})
    );

    // Totals over every live projection: prod-d's 999,999 is gone, EUR is kept apart.
    let cf =
        |m: &str, c: &str, amount: i64, cumulative: i64| json!({"currency": c, "month": m, "amount": amount, "cumulative": cumulative});
    let all = data(base, "{ cashFlowByMonth { currency month amount cumulative } }").await;
    assert_eq!(
        all["cashFlowByMonth"],
        json!([
            cf("2027-01-01", "EUR", 70_000, 70_000),
            cf("2027-01-01", "USD", 400_000, 400_000),
            cf("2027-02-01", "USD", 700_000, 1_100_000),
            cf("2027-03-01", "USD", 300_000, 1_400_000),
            cf("2027-04-01", "USD", 100_000, 1_500_000)
        ])
    );
    let window =
        data(base, "{ cashFlowByMonth(currency: \"USD\", from: \"2027-02\", to: \"2027-03-31\") { currency month amount cumulative } }")
            .await;
    assert_eq!(
        window["cashFlowByMonth"],
        json!([cf("2027-02-01", "USD", 700_000, 1_100_000), cf("2027-03-01", "USD", 300_000, 1_400_000)]),
        "the running total counts the months before `from`"
    );
    let b = data(base, "{ cashFlowByMonth(productionId: \"prod-b\") { currency month amount cumulative } }").await;
    assert_eq!(b["cashFlowByMonth"], json!([cf("2027-02-01", "USD", 200_000, 200_000), cf("2027-04-01", "USD", 100_000, 300_000)]));
    let bad = errors(base, "{ cashFlowByMonth(from: \"spring\") { month } }").await;
    assert!(bad[0].contains("from 'spring' is not a month"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_numbers_match_the_seeded_data() {
    let db = TempPath::new("slate-api-db");
    let sink = SqliteSink::connect(&sql_config(&db.sqlite_url()), &slate::catalogue::Catalogue::built_in()).await.expect("sqlite sink");
    seed_core(&sink).await;
    let audit = TempPath::new("slate-api-audit");
    let base = serve(&api_config(&db.sqlite_url(), &audit.0, &[])).await;
    check_core_numbers(&base).await;
    // SQLite views are plain: a write the sink commits shows at once.
    sink.write(&[sink_support::payment("pay-b2", 1, "prod-b", 450_000, "PENDING", "USD")]).await.expect("write");
    let d = data(&base, "{ overBudget { nodes { id committedOverBudget } } }").await;
    assert_eq!(
        d["overBudget"]["nodes"],
        json!([{"id": "prod-a", "committedOverBudget": -450_000}, {"id": "prod-b", "committedOverBudget": 50_000}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_numbers_match_the_seeded_data() {
    with_pg_database("slate_api", |url| async move {
        let sink = SqlSink::connect(&sql_config(&url), &slate::catalogue::Catalogue::built_in()).await.expect("postgres sink");
        seed_core(&sink).await;
        sink.refresh_views().await.expect("refresh the materialized view");
        let audit = TempPath::new("slate-api-audit");
        let base = serve(&api_config(&url, &audit.0, &[])).await;
        check_core_numbers(&base).await;
        // The API reads what the last refresh materialized, and it cannot write.
        sink.write(&[sink_support::payment("pay-b2", 1, "prod-b", 450_000, "PENDING", "USD")]).await.expect("write");
        let before = data(&base, "{ overBudget { totalCount } }").await;
        assert_eq!(before["overBudget"]["totalCount"], 1, "not refreshed yet");
        sink.refresh_views().await.expect("refresh");
        let after = data(&base, "{ overBudget { totalCount } }").await;
        assert_eq!(after["overBudget"]["totalCount"], 2);
        sink.pool().close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_walks_every_production_once_and_caps_first() {
    let records: Vec<SinkRecord> = (0..23).map(|i| sink_support::production(&format!("prod-{i:03}"), 1, "USD")).collect();
    let (db, audit) = sqlite_with(&records).await;
    let base = serve(&api_config(&db.sqlite_url(), &audit.0, &[ov("api.max_page_size", 10)])).await;

    let (mut seen, mut after, mut pages) = (Vec::<String>::new(), None::<String>, 0);
    loop {
        let args = after.as_ref().map_or("first: 5".to_string(), |c| format!("first: 5, after: \"{c}\""));
        let d = data(
            &base,
            &format!("{{ productions({args}) {{ totalCount edges {{ cursor node {{ id }} }} pageInfo {{ hasNextPage endCursor }} }} }}"),
        )
        .await;
        let page = &d["productions"];
        assert_eq!(page["totalCount"], 23);
        let edges = page["edges"].as_array().unwrap();
        assert!(!edges.is_empty() && edges.len() <= 5, "{page}");
        seen.extend(edges.iter().map(|e| e["node"]["id"].as_str().unwrap().to_string()));
        assert_eq!(page["pageInfo"]["endCursor"], edges.last().unwrap()["cursor"]);
        pages += 1;
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_string());
        assert!(pages < 10, "pagination does not end");
    }
    let expected: Vec<String> = (0..23).map(|i| format!("prod-{i:03}")).collect();
    assert_eq!(seen, expected, "every production exactly once, in id order");
    assert_eq!(pages, 5);

    let too_many = errors(&base, "{ productions(first: 11) { totalCount } }").await;
    assert!(too_many[0].contains("between 1 and 10 (api.max_page_size), got 11"), "{too_many:?}");
    let at_limit = data(&base, "{ productions(first: 10) { nodes { id } } }").await;
    assert_eq!(at_limit["productions"]["nodes"].as_array().unwrap().len(), 10);
    let bad_cursor = errors(&base, "{ productions(first: 5, after: \"prod-001\") { totalCount } }").await;
    assert!(bad_cursor[0].contains("invalid cursor"), "{bad_cursor:?}");
    let history_cap = errors(&base, "{ history(entity: BUDGET, id: \"b\", first: 11) { eventUuid } }").await;
    assert!(history_cap[0].contains("api.max_page_size"), "{history_cap:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_complexity_limits_reject_abusive_queries() {
    let (db, audit) = sqlite_with(&two_productions()).await;
    let cfg =
        api_config(&db.sqlite_url(), &audit.0, &[ov("api.max_depth", 4), ov("api.max_complexity", 1000), ov("api.max_page_size", 500)]);
    let base = serve(&cfg).await;

    // productions > edges > node > cashFlow > month: depth 5.
    let deep = gql(&base, "{ productions(first: 1) { edges { node { cashFlow { month } } } } }").await;
    assert!(deep["data"].is_null(), "nothing ran: {deep}");
    let msg = deep["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("depth limit of 4") && msg.contains("api.max_depth"), "{msg}");
    data(&base, "{ productions(first: 1) { nodes { id } } }").await;
    // Introspection reads no data and GraphiQL's nests deeper than data queries: it gets more room,
    // but only on its own.
    let schema = data(&base, "{ __schema { types { name fields { name type { kind ofType { kind ofType { name } } } } } } }").await;
    assert!(schema["__schema"]["types"].as_array().unwrap().iter().any(|t| t["name"] == "Production"), "{schema}");
    let mixed = errors(&base, "{ __schema { types { fields { type { ofType { name } } } } } productions { totalCount } }").await;
    assert!(mixed[0].contains("depth limit of 4"), "{mixed:?}");

    // Cost scales with `first`: 100 × 7 fields fits in 1000, 200 × 7 does not.
    let fields = "nodes { id title budget paid pending projected }";
    data(&base, &format!("{{ productions(first: 100) {{ {fields} }} }}")).await;
    let costly = gql(&base, &format!("{{ productions(first: 200) {{ {fields} }} }}")).await;
    assert!(costly["data"].is_null(), "nothing ran: {costly}");
    let msg = costly["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("complexity limit of 1000") && msg.contains("api.max_complexity"), "{msg}");
    // Aliases do not get around it.
    let aliased =
        errors(&base, "{ a: history(entity: BUDGET, id: \"x\", first: 500) { eventUuid payload } b: productions { nodes { id } } }").await;
    assert!(aliased[0].contains("complexity limit"), "{aliased:?}");
}

/// One audit record of budget `id` at `event_ts` (ms) and `offset` of partition `partition`.
fn audit_record(id: &str, version: i64, deleted: bool, event_ts: i64, partition: i32, offset: i64) -> SinkRecord {
    let value = (!deleted).then(|| json!({"id": id, "version": version, "production_id": "prod-a", "currency": "USD"}));
    SinkRecord {
        writer: None,
        entity: slate::studio::kind::BUDGET,
        id: id.into(),
        version: Some(version),
        change_type: if deleted { ChangeType::Delete } else { ChangeType::Update },
        value,
        event_ts,
        event_uuids: vec![uuid::Uuid::new_v4()],
        topic: "slate.budget.enriched".into(),
        partition,
        offset,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_returns_one_ids_events_newest_first() {
    let (db, audit) = sqlite_with(&[]).await;
    let at = |day: u32, hour: i64| i64::from(slate::time::days_from_civil(2027, 1, day)) * 86_400_000 + hour * 3_600_000;
    let sink = AuditSink::new(&AuditSinkConfig { dir: audit.0.clone() }).expect("audit sink");
    let written = [
        audit_record("bud-1", 1, false, at(10, 10) + 123, 0, 5),
        audit_record("bud-1", 2, false, at(11, 9), 0, 7),
        audit_record("bud-2", 1, false, at(11, 11), 0, 8),
        audit_record("bud-1", 3, false, at(12, 8), 1, 1200),
        // Same event time as v3: the later Kafka offset is the newer event.
        audit_record("bud-1", 4, true, at(12, 8), 1, 1300),
    ];
    sink.write(&written[..2]).await.expect("audit write");
    sink.write(&written[2..]).await.expect("audit write");
    // Leftovers a reader must skip: a writer's temp file and a non-Parquet file.
    let day_dir = audit.0.join("entity=budget").join("dt=2027-01-12");
    std::fs::write(day_dir.join(".tmp-slate.budget.enriched-p1-o1000-1999.parquet.abc"), b"partial").unwrap();
    std::fs::write(day_dir.join("README.txt"), b"not parquet").unwrap();

    let base = serve(&api_config(&db.sqlite_url(), &audit.0, &[])).await;
    let fields = "eventUuid changeType eventTs sourceVersion deleted payload kafkaTopic kafkaPartition kafkaOffset";
    let d = data(&base, &format!("{{ history(entity: BUDGET, id: \"bud-1\") {{ {fields} }} }}")).await;
    let events = d["history"].as_array().unwrap();
    let versions: Vec<i64> = events.iter().map(|e| e["sourceVersion"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![4, 3, 2, 1], "newest first, bud-2 left out: {d}");
    let oldest = &events[3];
    assert_eq!(oldest["eventUuid"], written[0].event_uuids[0].to_string());
    assert_eq!(oldest["eventTs"], "2027-01-10T10:00:00.123Z");
    assert_eq!((oldest["changeType"].as_str(), oldest["deleted"].as_bool()), (Some("UPDATE"), Some(false)));
    let payload: Json = serde_json::from_str(oldest["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["version"], 1);
    assert_eq!(
        (oldest["kafkaTopic"].as_str(), oldest["kafkaPartition"].as_i64(), oldest["kafkaOffset"].as_i64()),
        (Some("slate.budget.enriched"), Some(0), Some(5))
    );
    assert_eq!(
        (events[0]["changeType"].as_str(), events[0]["deleted"].as_bool(), &events[0]["payload"]),
        (Some("DELETE"), Some(true), &Json::Null)
    );

    let newest_two = data(&base, "{ history(entity: BUDGET, id: \"bud-1\", first: 2) { sourceVersion } }").await;
    assert_eq!(newest_two["history"], json!([{"sourceVersion": 4}, {"sourceVersion": 3}]));
    let other = data(&base, "{ history(entity: BUDGET, id: \"bud-2\") { sourceVersion kafkaOffset } }").await;
    assert_eq!(other["history"], json!([{"sourceVersion": 1, "kafkaOffset": 8}]));
    let none = data(
        &base,
        "{ talent: history(entity: TALENT, id: \"tal-1\") { eventUuid } unknown: history(entity: BUDGET, id: \"bud-9\") { eventUuid } }",
    )
    .await;
    assert_eq!(none, json!({"talent": [], "unknown": []}));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_is_required_when_configured() {
    let (db, audit) = sqlite_with(&two_productions()).await;
    let token = "s3cret-token-0123456789";
    let base = serve(&api_config(&db.sqlite_url(), &audit.0, &[ov("api.bearer_token", format!("\"{token}\""))])).await;
    let query = "{ productions { totalCount } }";

    for wrong in [None, Some("s3cret-token-0123456788"), Some("s3cret-token-012345678"), Some("")] {
        let (status, headers, body) = post(&base, query, wrong).await;
        assert_eq!(status, 401, "token {wrong:?}: {body}");
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{headers:?}");
        assert!(body["data"].is_null() && body["errors"][0]["message"].as_str().unwrap().contains("bearer token"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    let (status, _, body) = post(&base, query, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["productions"]["totalCount"], 2, "{body}");

    let graphiql = reqwest::get(format!("{base}/graphql")).await.unwrap();
    assert_eq!(graphiql.status(), 401, "the GraphiQL page is behind the token too");
    let page = reqwest::Client::new().get(format!("{base}/graphql")).bearer_auth(token).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("graphiql"), "GraphiQL page");
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!((health.status().as_u16(), health.text().await.unwrap()), (200, "ok".to_string()), "probes need no token");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_names_missing_tables_and_unreachable_databases() {
    let audit = TempPath::new("slate-api-audit");
    let missing = TempPath::new("slate-api-db");
    let err = Analyst::connect(&api_config(&missing.sqlite_url(), &audit.0, &[])).await.err().expect("no database file");
    let message = err.to_string();
    assert!(message.starts_with(&format!("no SQL sink tables in {}; start `slate run sink sql` first", missing.sqlite_url())), "{message}");
    assert!(message.contains("sinks.sql.migrations"), "the message names the setting that adds the views: {message}");
    assert!(!missing.0.exists(), "the API never creates the sink's database");

    // A database that exists but was never migrated by the sink.
    let empty = TempPath::new("slate-api-db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&empty.0).create_if_missing(true);
    sqlx::SqlitePool::connect_with(opts).await.expect("create an empty database").close().await;
    let err = Analyst::connect(&api_config(&empty.sqlite_url(), &audit.0, &[])).await.err().expect("no tables");
    assert!(matches!(err, AnalystError::NoTables { .. }), "{err}");

    with_pg_database("slate_api", |url| async move {
        let err =
            Analyst::connect(&api_config(&url, std::path::Path::new("unused"), &[])).await.err().expect("no tables in a new database");
        assert!(err.to_string().starts_with("no SQL sink tables in postgres"), "{err}");
    })
    .await;

    let err = Analyst::connect(&api_config("postgres://postgres@127.0.0.1:1/slate", &audit.0, &[])).await.err().expect("nothing listens");
    assert!(err.is_transient(), "an unreachable database is worth waiting for: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slate_run_api_serves_until_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (db, audit) = sqlite_with(&two_productions()).await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slate"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SLATE_")) {
        cmd.env_remove(k);
    }
    cmd.args(["run", "api"])
        .env("SLATE_API__DATABASE_URL", db.sqlite_url())
        .env("SLATE_API__AUDIT_DIR", &audit.0)
        .env("SLATE_API__LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("slate runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(url) = line.strip_prefix("analyst GraphQL: ") {
                return url.to_string();
            }
        }
        panic!("slate run api exited without printing its address");
    })
    .await
    .expect("slate run api prints its address");
    let base = url.strip_suffix("/graphql").expect("url ends in /graphql").to_string();
    assert_eq!(reqwest::get(format!("{base}/health")).await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(data(&base, "{ productions { totalCount } }").await["productions"]["totalCount"], 2);

    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits on SIGTERM").unwrap();
    assert!(status.success(), "graceful exit: {status}");
}
