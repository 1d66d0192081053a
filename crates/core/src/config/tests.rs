use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<Override> {
    env_overrides(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

fn load_str(toml: &str, overrides: &[Override]) -> Result<Config, ConfigError> {
    let mut f = tempfile_in_target();
    f.1.write_all(toml.as_bytes()).unwrap();
    let r = Config::load(Some(&f.0), overrides);
    std::fs::remove_file(&f.0).ok();
    r
}

fn tempfile_in_target() -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("slate-config-{}.toml", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

fn err(r: Result<Config, ConfigError>) -> String {
    r.expect_err("config should be rejected").to_string()
}

#[test]
fn defaults_are_valid_and_local() {
    let c = Config::load(None, &[]).unwrap();
    assert!(c.registry_server.listen.ip().is_loopback());
    assert!(c.studio.http_listen.ip().is_loopback());
    assert!(c.studio.grpc_listen.ip().is_loopback());
    assert_eq!(c.kafka.producer.acks, Acks::All);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = err(load_str("[kafka]\nbootstrap_server = \"x:1\"\n", &[]));
    assert!(e.contains("kafka.bootstrap_server"), "{e}");
    let e = err(load_str("[studoi]\n", &[]));
    assert!(e.contains("studoi"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = err(load_str("[studio.faults]\nerror_rate = 1.5\n", &[]));
    assert!(e.contains("studio.faults.error_rate") && e.contains("0.0..=1.0"), "{e}");
    let e = err(load_str("[registry_server]\nlisten = \"nope\"\n", &[]));
    assert!(e.contains("registry_server.listen"), "{e}");
    let e = err(load_str("[studio.load]\nkey_skew = \"zipf:-1\"\n", &[]));
    assert!(e.contains("studio.load.key_skew") && e.contains("zipf:1.1"), "{e}");
    let e = err(load_str("[kafka.producer]\nacks = \"2\"\n", &[]));
    assert!(e.contains("kafka.producer.acks"), "{e}");
    let e = err(load_str("[registry]\nurl = \"ftp://x\"\n", &[]));
    assert!(e.contains("registry.url"), "{e}");
    let e = err(load_str("[registry_server]\nstorage = \"postgres\"\n", &[]));
    assert!(e.contains("registry_server.database_url"), "{e}");
    let e = err(load_str("[registry_server]\ndefault_compatibility = \"SOMETIMES\"\n", &[]));
    assert!(e.contains("default_compatibility") && e.contains("FULL_TRANSITIVE"), "{e}");
    let e = err(load_str("[kafka.consumer]\nassignment = \"sticky\"\n", &[]));
    assert!(e.contains("kafka.consumer.assignment") && e.contains("cooperative-sticky"), "{e}");
    let c = load_str("[kafka.consumer]\nassignment = \"roundrobin\"\n", &[]).unwrap();
    assert_eq!(c.kafka.consumer.assignment.as_librdkafka(), "roundrobin");
    let e = err(load_str("not toml = = 1", &[]));
    assert!(e.contains("not valid TOML"), "{e}");
}

#[test]
fn sasl_and_tls_combinations_are_checked() {
    let e = err(load_str("[kafka]\nsecurity_protocol = \"sasl_ssl\"\n", &[]));
    assert!(e.contains("kafka.sasl"), "{e}");
    let e = err(load_str("[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"p\"\n", &[]));
    assert!(e.contains("kafka.security_protocol") && e.contains("sasl_ssl"), "{e}");
    let e = err(load_str(
        "[kafka]\nsecurity_protocol = \"sasl_ssl\"\n[kafka.sasl]\nmechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"p\"\n",
        &[],
    ));
    assert!(e.contains("kafka.sasl.mechanism"), "{e}");
    let e = err(load_str("[kafka]\nsecurity_protocol = \"ssl\"\n[kafka.tls]\nca_location = \"/nonexistent/ca.pem\"\n", &[]));
    assert!(e.contains("kafka.tls.ca_location") && e.contains("does not exist"), "{e}");
    let e = err(load_str("[kafka.properties]\n\"sasl.password\" = \"x\"\n", &[]));
    assert!(e.contains("kafka.sasl.password"), "{e}");
}

#[test]
fn env_overrides_win_over_the_file_and_are_typed() {
    let o = env(&[
        ("SLATE_KAFKA__BOOTSTRAP_SERVERS", "b1:9092,b2:9092"),
        ("SLATE_STUDIO__FAULTS__ERROR_RATE", "0.25"),
        ("SLATE_STUDIO__SEED", "7"),
        ("SLATE_STUDIO__FAULTS__LATENCY", "2ms"),
        ("SLATE_CONFIG", "/ignored.toml"),
        ("HOME", "/root"),
    ]);
    let c = load_str("[kafka]\nbootstrap_servers = \"file:9092\"\n", &o).unwrap();
    assert_eq!(c.kafka.bootstrap_servers, "b1:9092,b2:9092");
    assert_eq!(c.studio.faults.error_rate, 0.25);
    assert_eq!(c.studio.seed, 7);
    assert_eq!(c.studio.faults.latency, std::time::Duration::from_millis(2));
}

#[test]
fn env_errors_name_the_variable() {
    let e = err(Config::load(None, &env(&[("SLATE_STUDIO__SEED", "many")])));
    assert!(e.contains("studio.seed") && e.contains("SLATE_STUDIO__SEED"), "{e}");
    let e = err(Config::load(None, &env(&[("SLATE_NOPE", "1")])));
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn numeric_password_from_env_is_accepted() {
    let o = env(&[
        ("SLATE_KAFKA__SECURITY_PROTOCOL", "sasl_plaintext"),
        ("SLATE_KAFKA__SASL__MECHANISM", "SCRAM-SHA-512"),
        ("SLATE_KAFKA__SASL__USERNAME", "svc"),
        ("SLATE_KAFKA__SASL__PASSWORD", "123456"),
    ]);
    let c = Config::load(None, &o).unwrap();
    assert_eq!(c.kafka.sasl.unwrap().password.expose(), "123456");
}

#[test]
fn secrets_are_redacted_in_debug_and_show() {
    let toml = r#"
[kafka]
security_protocol = "sasl_plaintext"
[kafka.sasl]
mechanism = "SCRAM-SHA-256"
username = "svc"
password = "kafka-pass-1"
[kafka.properties]
"ssl.keystore.password" = "keystore-pass-2"
[registry]
bearer_token = "token-3"
[registry_server]
storage = "postgres"
database_url = "postgres://reg:db-pass-4@127.0.0.1/reg"
[registry_server.basic_auth]
username = "admin"
password = "reg-pass-5"
"#;
    let c = load_str(toml, &[]).unwrap();
    let shown = c.to_redacted_toml();
    let debug = format!("{c:?}");
    for secret in ["kafka-pass-1", "keystore-pass-2", "token-3", "db-pass-4", "reg-pass-5"] {
        assert!(!shown.contains(secret), "{secret} leaked in config show:\n{shown}");
        assert!(!debug.contains(secret), "{secret} leaked in Debug");
    }
    assert!(shown.contains("svc") && shown.contains(REDACTED));
    // The redacted output is itself a loadable config shape (same keys).
    shown.parse::<toml::Table>().unwrap();
}

#[test]
fn retry_delay_doubles_per_round_up_to_the_cap() {
    let c = Config::load(None, &[]).unwrap().enricher;
    let secs: Vec<u64> = (1..=10).map(|r| c.retry_delay_for(r).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    assert_eq!(c.retry_delay_for(u32::MAX), c.retry_delay_max);
}

#[test]
fn the_catalogue_is_declared_in_config_and_checked_at_load() {
    let c = Config::load(None, &[]).unwrap();
    assert_eq!(c.entities().names().len(), 6, "no [catalogue.entities]: the built-in example");
    let dir = std::env::temp_dir().join(format!("slate-config-schemas-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let meta = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/avro/Production.avsc")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let meta_field = meta["fields"].as_array().unwrap().iter().find(|f| f["name"] == "_meta").unwrap().clone();
    let invoice = serde_json::json!({"type": "record", "name": "Invoice", "namespace": "acme", "fields": [
        {"name": "id", "type": "string"}, {"name": "version", "type": "long"}, meta_field]});
    std::fs::write(dir.join("Invoice.avsc"), invoice.to_string()).unwrap();
    let toml = format!("[catalogue]\nschemas_dir = {:?}\n[catalogue.entities.invoice]\n", dir.display().to_string());
    let c = load_str(&toml, &[]).unwrap();
    let names: Vec<&str> = c.entities().names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["invoice"]);
    assert_eq!(c.enricher.input_topics(c.entities()), ["studio.invoice.changes"]);

    let e = err(load_str(&format!("{toml}[sources.entities.invoce]\nendpoint = \"http://127.0.0.1:1/graphql\"\n"), &[]));
    assert!(e.contains("sources.entities.invoce") && e.contains("no entity `invoce`") && e.contains("invoice"), "{e}");
    let e = err(load_str(&format!("{toml}[catalogue.entities.contract]\n"), &[]));
    assert!(e.contains("catalogue.entities.contract.schema") && e.contains("Contract.avsc"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sql_migrations_and_refresh_views_are_checked_by_name() {
    let e = err(load_str("[sinks.sql]\nmigrations = \"no/such/dir\"\n", &[]));
    assert!(e.contains("sinks.sql.migrations") && e.contains("not a directory"), "{e}");
    let e = err(load_str("[sinks.sql]\nrefresh_views = [\"v; DROP TABLE payment\"]\n", &[]));
    assert!(e.contains("sinks.sql.refresh_views") && e.contains("not a view name"), "{e}");
    let e = err(load_str("[sinks.sql]\ndatabase_url = \"sqlite://x.db\"\nrefresh_views = [\"v\"]\n", &[]));
    assert!(e.contains("sinks.sql.refresh_views") && e.contains("SQLite has no materialized views"), "{e}");
    let views = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sql");
    let c = load_str(&format!("[sinks.sql]\nmigrations = {views:?}\nrefresh_views = [\"public.budget_vs_actuals\"]\n"), &[]).unwrap();
    assert_eq!(c.sinks.sql.refresh_views, ["public.budget_vs_actuals"]);
}

#[test]
fn exactly_once_needs_acks_all_and_a_message_timeout_within_the_transaction() {
    let eos = "[enricher]\ndelivery = \"exactly_once\"\n";
    let c = load_str(eos, &[]).unwrap();
    assert_eq!(c.enricher.delivery, Delivery::ExactlyOnce);
    assert!(c.enricher.transactional_id().starts_with("slate-enricher-"), "{}", c.enricher.transactional_id());
    let e = err(load_str(&format!("{eos}[kafka.producer]\nacks = \"1\"\n"), &[]));
    assert!(e.contains("kafka.producer.acks") && e.contains("exactly_once"), "{e}");
    let e = err(load_str(&format!("{eos}transaction_timeout = \"10s\"\n"), &[]));
    assert!(e.contains("kafka.producer.message_timeout") && e.contains("enricher.transaction_timeout"), "{e}");
    let e = err(load_str(&format!("{eos}transactional_id = \"\"\n"), &[]));
    assert!(e.contains("enricher.transactional_id"), "{e}");
    let e = err(load_str("[enricher]\ndelivery = \"twice\"\n", &[]));
    assert!(e.contains("delivery"), "{e}");
    // At-least-once keeps any acks setting.
    load_str("[kafka.producer]\nacks = \"1\"\n", &[]).unwrap();
}

#[test]
fn static_membership_ids_must_not_be_empty() {
    let c = load_str("[kafka.consumer]\ngroup_instance_id = \"enricher-0\"\n", &[]).unwrap();
    assert_eq!(c.kafka.consumer.group_instance_id.as_deref(), Some("enricher-0"));
    let e = err(load_str("[kafka.consumer]\ngroup_instance_id = \" \"\n", &[]));
    assert!(e.contains("kafka.consumer.group_instance_id"), "{e}");
    let e = err(load_str("[kafka.properties]\n\"group.instance.id\" = \"x\"\n", &[]));
    assert!(e.contains("kafka.consumer.group_instance_id"), "{e}");
}
