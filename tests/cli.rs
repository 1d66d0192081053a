//! The binary's edge: help, config validation at start, and secret redaction.

use std::process::Command;

fn slate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slate"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SLATE_")) {
        c.env_remove(k);
    }
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("slate runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_lists_the_subcommands() {
    let (ok, out, _) = run(slate().arg("--help"));
    assert!(ok);
    for cmd in ["studio", "registry", "config"] {
        assert!(out.contains(cmd), "{cmd} missing from:\n{out}");
    }
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let (ok, _, err) = run(slate().args(["studio", "--no-publish"]).env("SLATE_STUDIO__FAULTS__ERROR_RATE", "2"));
    assert!(!ok);
    assert!(err.contains("studio.faults.error_rate") && err.contains("0.0..=1.0"), "{err}");
    let dir = std::env::temp_dir().join(format!("slate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[registry_server]\nlisten = \"127.0.0.1:8081\"\nstorag = \"memory\"\n").unwrap();
    let (ok, _, err) = run(slate().args(["registry", "--config"]).arg(&file));
    assert!(!ok);
    assert!(err.contains("registry_server.storag"), "{err}");
    let (ok, _, err) = run(slate().args(["studio", "--key-skew", "zipf"]));
    assert!(!ok);
    assert!(err.contains("studio.load.key_skew") && err.contains("--key-skew"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_show_redacts_secrets_from_env() {
    let (ok, out, err) = run(slate()
        .args(["config", "show"])
        .env("SLATE_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
        .env("SLATE_KAFKA__SASL__MECHANISM", "PLAIN")
        .env("SLATE_KAFKA__SASL__USERNAME", "svc-enricher")
        .env("SLATE_KAFKA__SASL__PASSWORD", "do-not-print-me")
        .env("SLATE_REGISTRY__BEARER_TOKEN", "token-do-not-print")
        .env("SLATE_LOG", "debug"));
    assert!(ok, "{err}");
    assert!(out.contains("svc-enricher") && out.contains("sasl_ssl"), "{out}");
    assert!(!out.contains("do-not-print-me") && !err.contains("do-not-print-me"), "{out}\n{err}");
    assert!(!out.contains("token-do-not-print") && !err.contains("token-do-not-print"));
}

#[test]
fn the_example_config_is_valid_and_complete() {
    let (ok, out, err) = run(slate().args(["config", "show", "-c", "slate.example.toml"]));
    assert!(ok, "{err}");
    // Every section of the effective config appears in the reference file.
    let example = std::fs::read_to_string("slate.example.toml").unwrap();
    for line in out.lines().filter(|l| l.starts_with('[')) {
        assert!(
            example.contains(line.trim()) || example.contains(&format!("# {}", line.trim())),
            "section {line} is not documented in slate.example.toml"
        );
    }
    for line in out.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        assert!(example.contains(&format!("{key} =")), "key {key} is not documented in slate.example.toml");
    }
}
