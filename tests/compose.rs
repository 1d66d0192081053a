//! `docker/compose.yaml`, validated statically: CI cannot run Docker.
//!
//! `tests/py/compose_env.py` reads the file as Compose does (anchors, `<<:` merges, both
//! `environment` forms, `${VAR:-default}` at its default) and prints every service as JSON. Then,
//! for every service built from `docker/Dockerfile`, the real binary runs `slate config check`
//! with exactly that service's environment (every `SLATE_*` key must exist in the config schema
//! and every value validate) and the service's command with `--help`; and the effective configs
//! (`slate config show`) are checked against the rest of the file: listeners on 0.0.0.0, every
//! host a role connects to is a service listening on that port and awaited in `depends_on`, the
//! roles agree on shared settings. Negative controls prove each kind of check can fail. The
//! reader itself is tested in `tests/compose_parser.rs`.
//! Run through `tests/run` (it provides `TEST_PYTHON`, a venv with PyYAML).

mod common;
mod compose_support;

use compose_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// A slate role the compose file must run: its service, its command (after the image's
/// `ENTRYPOINT ["slate"]`), the listeners it opens, which of them may be published (and which
/// must be), and the config keys naming what it connects to.
struct Role {
    service: &'static str,
    command: &'static [&'static str],
    listens: &'static [&'static str],
    publishable: &'static [&'static str],
    must_publish: &'static [&'static str],
    connects: &'static [&'static str],
}

const ROLES: &[Role] = &[
    Role {
        service: "studio",
        command: &["studio"],
        listens: &["studio.http_listen", "studio.grpc_listen"],
        publishable: &["studio.http_listen"],
        must_publish: &["studio.http_listen"],
        connects: &["kafka.bootstrap_servers"],
    },
    Role {
        service: "enricher",
        command: &["run", "enricher"],
        listens: &["enricher.metrics_listen"],
        publishable: &["enricher.metrics_listen"],
        must_publish: &[],
        connects: &["kafka.bootstrap_servers", "registry.url", "sources.graphql_endpoint", "sources.grpc_endpoint"],
    },
    Role {
        service: "sink-sql",
        command: &["run", "sink", "sql"],
        listens: &["sinks.metrics_listen"],
        publishable: &["sinks.metrics_listen"],
        must_publish: &[],
        connects: &["kafka.bootstrap_servers", "registry.url", "sinks.sql.database_url"],
    },
    Role {
        service: "sink-search",
        command: &["run", "sink", "search"],
        listens: &["sinks.metrics_listen"],
        publishable: &["sinks.metrics_listen"],
        must_publish: &[],
        connects: &["kafka.bootstrap_servers", "registry.url", "sinks.search.url"],
    },
    Role {
        service: "sink-audit",
        command: &["run", "sink", "audit"],
        listens: &["sinks.metrics_listen"],
        publishable: &["sinks.metrics_listen"],
        must_publish: &[],
        connects: &["kafka.bootstrap_servers", "registry.url"],
    },
    Role {
        service: "api",
        command: &["run", "api"],
        listens: &["api.listen"],
        publishable: &["api.listen"],
        must_publish: &["api.listen"],
        connects: &["api.database_url"],
    },
    Role {
        service: "dashboard",
        command: &["run", "dashboard"],
        listens: &["dashboard.listen"],
        publishable: &["dashboard.listen"],
        must_publish: &["dashboard.listen"],
        connects: &["dashboard.metrics_urls"],
    },
];

/// The third-party services and the image each must run.
const INFRA: &[(&str, &str)] = &[
    ("kafka", "apache/kafka:"),
    ("schema-registry", "confluentinc/cp-schema-registry:"),
    ("postgres", "postgres:"),
    ("opensearch", "opensearchproject/opensearch:"),
];

fn role(service: &str) -> Option<&'static Role> {
    ROLES.iter().find(|r| r.service == service)
}

/// The ports a service listens on inside the compose network.
fn ports_of(c: &Compose, cfgs: &BTreeMap<String, toml::Table>, name: &str) -> BTreeSet<u16> {
    let s = &c.services[name];
    let mut ports: BTreeSet<u16> = s.expose.iter().copied().collect();
    ports.extend(s.ports.iter().map(|p| p.target));
    if let (Some(role), Some(cfg)) = (role(name), cfgs.get(name)) {
        ports.extend(role.listens.iter().filter_map(|k| get(cfg, k)?.parse::<SocketAddr>().ok()).map(|a| a.port()));
    }
    ports
}

/// Everything wrong with the file besides `config check`: structure, listeners, ports,
/// connections, dependencies and settings the roles must share. Empty when all is well.
fn problems(c: &Compose, cfgs: &BTreeMap<String, toml::Table>, dockerfile: &str) -> Vec<String> {
    let mut p = Vec::new();
    if !dockerfile.lines().any(|l| l.trim() == r#"ENTRYPOINT ["slate"]"#) {
        p.push(format!("{DOCKERFILE} must have ENTRYPOINT [\"slate\"]: the services' commands are slate arguments"));
    }
    for (name, s) in &c.services {
        if let Some(b) = &s.build
            && !b.dockerfile_path.is_file()
        {
            p.push(format!("services.{name}.build names {}, which does not exist", b.dockerfile_path.display()));
        }
        for (dep, condition) in &s.depends_on {
            match c.services.get(dep) {
                None => p.push(format!("services.{name}.depends_on: no service {dep}")),
                Some(d) if condition == "service_healthy" && !d.healthcheck => {
                    p.push(format!("services.{name}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck"))
                }
                Some(_) => {}
            }
        }
        if !is_slate(s) {
            let slate_vars: Vec<_> = s.environment.keys().filter(|k| k.to_ascii_uppercase().starts_with("SLATE_")).collect();
            if !slate_vars.is_empty() {
                p.push(format!("services.{name} is not a slate service but sets {slate_vars:?}"));
            }
            continue;
        }
        let Some(role) = role(name) else {
            p.push(format!("services.{name} is built from {DOCKERFILE} but is no known role; add it to ROLES in tests/compose.rs"));
            continue;
        };
        if s.command.as_ref().map(|c| c.iter().map(String::as_str).collect::<Vec<_>>()) != Some(role.command.to_vec()) {
            p.push(format!("services.{name}.command is {:?}, expected {:?}", s.command, role.command));
        }
        if s.entrypoint.is_some() {
            p.push(format!("services.{name} overrides the entrypoint"));
        }
        if !s.env_file.is_empty() {
            p.push(format!("services.{name} has an env_file; configure slate in the file's environment only"));
        }
        if let Some(k) = s.environment.keys().find(|k| !k.starts_with("SLATE_")) {
            p.push(format!("services.{name}.environment.{k}: slate services are configured only through SLATE_* variables"));
        }
        let Some(cfg) = cfgs.get(name) else {
            p.push(format!("services.{name}: `slate config show` fails with its environment"));
            continue;
        };
        // Listeners bind every interface, and only the user-facing ones are published.
        let mut listen_ports = BTreeMap::new();
        for key in role.listens {
            match get(cfg, key).map(|v| v.parse::<SocketAddr>()) {
                Some(Ok(addr)) if addr.ip().is_unspecified() => {
                    listen_ports.insert(*key, addr.port());
                }
                Some(Ok(addr)) => p.push(format!("services.{name}: {key} is {addr}; inside a container it must bind 0.0.0.0")),
                other => p.push(format!("services.{name}: {key} is {other:?}, expected a 0.0.0.0 listener")),
            }
        }
        let publishable: BTreeSet<u16> = role.publishable.iter().filter_map(|k| listen_ports.get(k).copied()).collect();
        for port in &s.ports {
            if !publishable.contains(&port.target) {
                p.push(format!("services.{name}.ports: {port:?} publishes no listener of {:?}", role.publishable));
            }
        }
        for key in role.must_publish {
            if !listen_ports.get(key).is_some_and(|lp| s.ports.iter().any(|port| port.target == *lp && port.published.is_some())) {
                p.push(format!("services.{name}: {key} is not published; users need it"));
            }
        }
        // Every host a role connects to is a service of the file, listening on that port, and
        // awaited (healthy when it has a healthcheck).
        let mut connects: Vec<String> = role.connects.iter().map(|k| k.to_string()).collect();
        if let Some(entities) = cfg.get("sources").and_then(|s| s.get("entities")).and_then(|e| e.as_table()) {
            connects.extend(entities.keys().map(|e| format!("sources.entities.{e}.endpoint")));
        }
        for key in &connects {
            let Some(value) = get(cfg, key) else {
                if role.connects.contains(&key.as_str()) {
                    p.push(format!("services.{name}: {key} is not set"));
                }
                continue;
            };
            match endpoints(key, &value) {
                Err(e) => p.push(format!("services.{name}: {e}")),
                Ok(hosts) => {
                    for (host, port) in hosts {
                        let Some(target) = c.services.get(&host) else {
                            p.push(format!("services.{name}: {key} names host {host}, which is no service of {COMPOSE}"));
                            continue;
                        };
                        if !ports_of(c, cfgs, &host).contains(&port) {
                            p.push(format!(
                                "services.{name}: {key} uses {host}:{port}, but {host} listens on {:?}",
                                ports_of(c, cfgs, &host)
                            ));
                        }
                        let wanted = if target.healthcheck { "service_healthy" } else { "service_started" };
                        if s.depends_on.get(&host).map(String::as_str) != Some(wanted) {
                            p.push(format!("services.{name}: connects to {host} ({key}) but has no depends_on {host}: {wanted}"));
                        }
                    }
                }
            }
        }
    }
    for r in ROLES {
        if !c.services.get(r.service).is_some_and(is_slate) {
            p.push(format!("role {} ({:?}) is missing: no service {} built from {DOCKERFILE}", r.service, r.command, r.service));
        }
    }
    for (name, prefix) in INFRA {
        match c.services.get(*name) {
            None => p.push(format!("services.{name} is missing")),
            Some(s) => {
                if !s.image.as_deref().is_some_and(|i| i.starts_with(prefix)) {
                    p.push(format!("services.{name}.image is {:?}, expected {prefix}…", s.image));
                }
                if !s.healthcheck {
                    p.push(format!("services.{name} has no healthcheck"));
                }
                if !s.ports.is_empty() {
                    p.push(format!("services.{name} publishes {:?}; it is for the compose network only", s.ports));
                }
            }
        }
    }
    if let Some(k) = c.services.get("kafka") {
        let env = |key: &str| k.environment.get(key).cloned().flatten().unwrap_or_default();
        if !env("KAFKA_PROCESS_ROLES").contains("controller") || env("KAFKA_CONTROLLER_QUORUM_VOTERS").is_empty() {
            p.push("services.kafka is not in KRaft mode (KAFKA_PROCESS_ROLES with controller, KAFKA_CONTROLLER_QUORUM_VOTERS)".into());
        }
    }
    p.extend(shared_setting_problems(c, cfgs, dockerfile));
    p
}

/// Settings that must agree between roles: subject names, brokers, topics, the database and
/// the audit tree.
fn shared_setting_problems(c: &Compose, cfgs: &BTreeMap<String, toml::Table>, dockerfile: &str) -> Vec<String> {
    let mut p = Vec::new();
    let of = |service: &str, key: &str| cfgs.get(service).and_then(|cfg| get(cfg, key));
    let agree = |p: &mut Vec<String>, key: &str, services: &[&str]| {
        let values: BTreeMap<&str, Option<String>> = services.iter().filter(|s| cfgs.contains_key(**s)).map(|s| (*s, of(s, key))).collect();
        if values.values().collect::<BTreeSet<_>>().len() > 1 {
            p.push(format!("{key} differs between roles: {values:?}"));
        }
    };
    let all: Vec<&str> = ROLES.iter().map(|r| r.service).collect();
    agree(&mut p, "registry.subject_name_strategy", &all);
    let uses = |key: &str| ROLES.iter().filter(|r| r.connects.contains(&key)).map(|r| r.service).collect::<Vec<_>>();
    agree(&mut p, "kafka.bootstrap_servers", &uses("kafka.bootstrap_servers"));
    agree(&mut p, "registry.url", &uses("registry.url"));
    if of("enricher", "enricher.topics").is_some_and(|t| t == "[]")
        && of("studio", "studio.topic_prefix") != of("enricher", "enricher.input_topic_prefix")
    {
        p.push(format!(
            "the enricher reads {:?}<entity>.changes but the studio publishes to {:?}<entity>.changes",
            of("enricher", "enricher.input_topic_prefix"),
            of("studio", "studio.topic_prefix")
        ));
    }
    for sink in ["sink-sql", "sink-search", "sink-audit"] {
        if of(sink, "sinks.topic_prefix") != of("enricher", "enricher.output_topic_prefix") {
            p.push(format!(
                "{sink} reads {:?}<entity>.enriched but the enricher writes {:?}<entity>.enriched",
                of(sink, "sinks.topic_prefix"),
                of("enricher", "enricher.output_topic_prefix")
            ));
        }
    }
    // The API reads the database the SQL sink writes (passwords are redacted in both).
    let db = |service: &str, key: &str| {
        of(service, key)
            .and_then(|u| reqwest::Url::parse(&u).ok())
            .map(|u| (u.host_str().map(str::to_string), u.port(), u.path().to_string()))
    };
    if db("api", "api.database_url") != db("sink-sql", "sinks.sql.database_url") {
        p.push(format!(
            "the API reads {:?} but the SQL sink writes {:?}",
            of("api", "api.database_url"),
            of("sink-sql", "sinks.sql.database_url")
        ));
    }
    // The audit tree: one named volume, written by the audit sink, read-only for the API, and
    // its mount point made in the image (or the volume would come up owned by root).
    let mount = |service: &str, dir: Option<String>| {
        let dir = dir?;
        c.services.get(service)?.volumes.iter().find(|v| v.target == dir).cloned()
    };
    match (mount("sink-audit", of("sink-audit", "sinks.audit.dir")), mount("api", of("api", "api.audit_dir"))) {
        (Some(w), Some(r)) => {
            if w.source.is_none() || w.source != r.source || !c.volumes.contains(w.source.as_ref().unwrap()) {
                p.push(format!(
                    "the audit sink writes volume {:?} but the API reads {:?} (both must be one named volume)",
                    w.source, r.source
                ));
            }
            if w.read_only || !r.read_only {
                p.push("the audit volume must be writable for sink-audit and read-only for api".into());
            }
            if !dockerfile.contains(&w.target) {
                p.push(format!("{DOCKERFILE} does not create {} (the audit volume's mount point, owned by the runtime user)", w.target));
            }
        }
        (w, r) => p.push(format!("the audit dir must be a volume mount in sink-audit ({w:?}) and api ({r:?})")),
    }
    p
}

#[test]
fn compose_slate_services_pass_config_check_with_exactly_their_environment() {
    let c = compose();
    let services = slate_services(&c);
    assert!(services.len() >= ROLES.len(), "only {} services are built from {DOCKERFILE}", services.len());
    let failures: Vec<String> = services
        .into_iter()
        .filter_map(|(name, s)| config_check(&env_of(name, s)).err().map(|e| format!("services.{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "`slate config check` fails with the environment of:\n{}", failures.join("\n"));
}

#[test]
fn compose_slate_service_commands_are_real_subcommands() {
    let c = compose();
    for (name, s) in slate_services(&c) {
        let mut args: Vec<&str> = s.command.iter().flatten().map(String::as_str).collect();
        assert!(!args.is_empty(), "services.{name} has no command (the image's default is --help)");
        args.push("--help");
        let out = slate(&env_of(name, s), &args);
        assert!(out.status.success(), "services.{name}: `slate {}` fails: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn compose_roles_listeners_hosts_and_shared_settings_are_consistent() {
    let c = compose();
    let dockerfile = std::fs::read_to_string(root().join(DOCKERFILE)).unwrap();
    let found = problems(&c, &effective(&c), &dockerfile);
    assert!(found.is_empty(), "{COMPOSE}:\n{}", found.join("\n"));
}

/// The controls: each kind of mistake is caught, so the tests above can fail.
#[test]
fn compose_misspelt_keys_and_miswired_services_are_caught() {
    // An unknown key fails `config check`, naming it (env overrides are never ignored).
    let env = BTreeMap::from([("SLATE_FOO__BAR".to_string(), "1".to_string())]);
    let err = config_check(&env).expect_err("an unknown SLATE_FOO__BAR is rejected");
    assert!(err.contains("foo"), "{err}");

    let c = compose();
    let sql = &c.services["sink-sql"];
    let mut env = env_of("sink-sql", sql);
    config_check(&env).expect("sink-sql's own environment is valid");
    env.insert("SLATE_SINKS__SQL__DATABSE_URL".into(), "postgres://slate@postgres:5432/slate".into());
    let err = config_check(&env).expect_err("a misspelt key is rejected");
    assert!(
        err.contains("sinks.sql.databse_url") && err.contains("SLATE_SINKS__SQL__DATABSE_URL"),
        "the error names the misspelt key: {err}"
    );

    let dockerfile = std::fs::read_to_string(root().join(DOCKERFILE)).unwrap();
    let caught = |what: &str, edit: &dyn Fn(&mut Compose), needle: &str| {
        let mut broken = c.clone();
        edit(&mut broken);
        let found = problems(&broken, &effective(&broken), &dockerfile);
        assert!(found.iter().any(|p| p.contains(needle)), "{what} is not caught (wanted a problem naming {needle:?}): {found:#?}");
    };
    let set = |c: &mut Compose, service: &str, key: &str, value: Option<&str>| {
        let env = &mut c.services.get_mut(service).unwrap().environment;
        match value {
            Some(v) => env.insert(key.into(), Some(v.into())),
            None => env.remove(key),
        };
    };
    caught(
        "a source host that is no service",
        &|c| set(c, "enricher", "SLATE_SOURCES__GRAPHQL_ENDPOINT", Some("http://studoi:8090/graphql")),
        "studoi",
    );
    caught("a wrong port", &|c| set(c, "sink-search", "SLATE_SINKS__SEARCH__URL", Some("http://opensearch:9300")), "opensearch:9300");
    caught("a loopback listener", &|c| set(c, "studio", "SLATE_STUDIO__HTTP_LISTEN", None), "studio.http_listen");
    caught(
        "a different subject name strategy",
        &|c| set(c, "sink-audit", "SLATE_REGISTRY__SUBJECT_NAME_STRATEGY", Some("record")),
        "subject_name_strategy",
    );
    caught(
        "a missing depends_on",
        &|c| {
            c.services.get_mut("sink-sql").unwrap().depends_on.remove("postgres");
        },
        "no depends_on postgres",
    );
    caught("a missing role", &|c| drop(c.services.remove("sink-audit")), "role sink-audit");
    caught(
        "a SLATE_* variable on a third-party service",
        &|c| set(c, "postgres", "SLATE_KAFKA__CLIENT_ID", Some("x")),
        "services.postgres is not a slate service",
    );
}
