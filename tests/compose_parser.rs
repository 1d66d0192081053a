//! The reader of `docker/compose.yaml` (`tests/compose_support`, through
//! `tests/py/compose_env.py`) reads a file as Compose does: anchors and `<<:` merges, both
//! `environment` and `command` forms, `${VAR:-default}` interpolation, ports, volumes,
//! `depends_on` conditions; and a variable without a default is an error, never empty.
//! Run through `tests/run` (it provides `TEST_PYTHON`, a venv with PyYAML).

mod common;
mod compose_support;

use compose_support::*;
use std::collections::BTreeMap;

#[test]
fn compose_parser_reads_files_as_compose_does() {
    let dir = std::env::temp_dir().join(common::unique("compose-parser"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yaml");
    std::fs::write(
        &file,
        r#"
x-base: &base
  build: ../img
  restart: always
x-env: &env
  A: "1"
  FLAG: true
  N: 3
services:
  one:
    <<: *base
    command: run sink "s q l"
    environment:
      <<: *env
      B: "${UNSET_COMPOSE_TEST_VAR:-fall:back}"
      C: "${UNSET_COMPOSE_TEST_VAR-dash}"
      D: "cost $$5"
      E: "pre-${UNSET_COMPOSE_TEST_VAR:+alt}-post"
    ports: ["127.0.0.1:8080:80", "9000/tcp"]
    volumes: ["data:/data:ro", {type: bind, source: /tmp/x, target: /x}]
    depends_on: { two: { condition: service_healthy } }
  two:
    image: postgres:17
    command: ["a", "b c"]
    environment:
      - K=v=w
      - BARE
    depends_on: [one]
    healthcheck: { test: ["CMD", "true"] }
volumes: { data: {} }
"#,
    )
    .unwrap();
    let c = parse(&file).expect("the sample parses");
    let one = &c.services["one"];
    assert_eq!(one.build.as_ref().unwrap().dockerfile_path, dir.parent().unwrap().join("img/Dockerfile"));
    assert_eq!(one.command.as_deref(), Some(&["run".to_string(), "sink".into(), "s q l".into()][..]));
    assert_eq!(one.command_form.as_deref(), Some("string"));
    let env: BTreeMap<_, _> = one.environment.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    let expected = [
        ("A", Some("1")),
        ("B", Some("fall:back")),
        ("C", Some("dash")),
        ("D", Some("cost $5")),
        ("E", Some("pre--post")),
        ("FLAG", Some("true")),
        ("N", Some("3")),
    ];
    assert_eq!(env, BTreeMap::from(expected));
    assert_eq!(one.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        one.ports,
        [
            Port { host_ip: Some("127.0.0.1".into()), published: Some("8080".into()), target: 80 },
            Port { host_ip: None, published: None, target: 9000 }
        ]
    );
    assert_eq!(
        one.volumes,
        [
            Volume { source: Some("data".into()), target: "/data".into(), read_only: true },
            Volume { source: Some("/tmp/x".into()), target: "/x".into(), read_only: false }
        ]
    );
    assert_eq!(one.depends_on, BTreeMap::from([("two".to_string(), "service_healthy".to_string())]));
    assert!(!one.healthcheck && one.image.is_none());
    let two = &c.services["two"];
    assert_eq!(two.command_form.as_deref(), Some("list"));
    assert_eq!(two.command.as_deref(), Some(&["a".to_string(), "b c".into()][..]));
    assert_eq!(two.environment, BTreeMap::from([("K".to_string(), Some("v=w".to_string())), ("BARE".to_string(), None)]));
    assert_eq!(two.depends_on, BTreeMap::from([("one".to_string(), "service_started".to_string())]));
    assert!(two.healthcheck && two.build.is_none());
    assert_eq!(c.volumes, ["data"]);

    // A variable without a default must not be silently read as empty.
    std::fs::write(&file, "services:\n  one:\n    image: x\n    environment:\n      X: \"${NO_DEFAULT_COMPOSE_TEST_VAR}\"\n").unwrap();
    let err = parse(&file).expect_err("a variable without a default is an error");
    assert!(err.contains("NO_DEFAULT_COMPOSE_TEST_VAR"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
