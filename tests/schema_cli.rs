//! `slate schema check --against git:REF|none` and `slate schema docs`, run as the built binary
//! on temporary git repositories: offline checks that a pull request can run without a registry.

use std::path::{Path, PathBuf};
use std::process::Command;

fn slate(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slate"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("SLATE_")) {
        cmd.env_remove(key);
    }
    let out = cmd.args(args).output().expect("slate runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=slate-test", "-c", "user.email=test@slate.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"n","doc":"r","fields":[{fields}]}}"#)
}

/// A fresh git repository with one commit per version of `R.avsc`.
fn repo(versions: &[String]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slate-schema-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    for (index, text) in versions.iter().enumerate() {
        std::fs::write(dir.join("R.avsc"), text).unwrap();
        git(&dir, &["add", "R.avsc"]);
        git(&dir, &["commit", "-q", "-m", &format!("v{}", index + 1)]);
    }
    dir
}

fn check(dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["schema", "check", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    slate(&args)
}

#[test]
fn git_history_is_checked_transitively_by_default() {
    let v1 = record(r#"{"name":"a","type":"string"}"#);
    let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
    let dir = repo(&[v1, v2]);
    let (ok, out, err) = check(&dir, &["--against", "git:HEAD"]);
    assert!(ok, "the committed schema is compatible with its own history:\n{out}\n{err}");
    assert!(out.contains("ok    R.avsc → n.R (BACKWARD_TRANSITIVE, against 2 earlier versions)"), "{out}");

    // v3 drops b's default: fine against v2, not against v1 (which has no b).
    std::fs::write(dir.join("R.avsc"), record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#)).unwrap();
    let (ok, out, _) = check(&dir, &["--against", "git:HEAD", "--mode", "BACKWARD"]);
    assert!(ok, "non-transitive looks at the latest version only:\n{out}");
    let (ok, out, err) = check(&dir, &["--against", "git:HEAD"]);
    assert!(!ok, "{out}");
    assert!(out.contains("field `b` [missing-default]") && out.contains("version 1 (git ") && !out.contains("version 2 (git "), "{out}");
    assert!(out.contains("fix: add a default"), "{out}");
    assert!(err.contains("schema check failed: 1 finding(s)"), "{err}");
    // Against the first commit only (HEAD~1), as a pull request against its merge base would be.
    let (ok, out, _) = check(&dir, &["--against", "git:HEAD~1"]);
    assert!(!ok && out.contains("against version 1 (git "), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_schema_new_to_git_is_checked_alone_and_lints_apply() {
    let dir = repo(&[record(r#"{"name":"a","type":"string"}"#)]);
    std::fs::write(
        dir.join("New.avsc"),
        r#"{"type":"record","name":"New","namespace":"n","fields":[{"name":"x","type":["null","string"],"default":"none"}]}"#,
    )
    .unwrap();
    let (ok, out, _) = check(&dir, &["--against", "git:HEAD"]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  New.avsc → n.New (BACKWARD_TRANSITIVE, no earlier version)"), "{out}");
    assert!(out.contains("field `x` [invalid-union-default]") && out.contains("move string first"), "{out}");
    assert!(out.contains("ok    R.avsc"), "{out}");
    let (ok, out, _) = check(&dir, &["--against", "none"]);
    assert!(!ok && out.contains("[invalid-union-default]"), "{out}");
    let (ok, _, err) = check(&dir, &["--against", "git:no-such-branch"]);
    assert!(!ok && err.contains("unknown revision \"no-such-branch\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_repository_schemas_pass_against_git_and_on_their_own() {
    for against in ["git:HEAD", "none"] {
        let (ok, out, err) = slate(&["schema", "check", "--against", against]);
        assert!(ok, "schemas/avro fails --against {against}:\n{out}\n{err}");
        assert!(out.contains("7 schema check(s) passed"), "{out}");
    }
}

#[test]
fn schema_docs_writes_the_checked_in_reference() {
    let out_file = std::env::temp_dir().join(format!("slate-schema-docs-{}.md", uuid::Uuid::new_v4().simple()));
    let (ok, out, err) = slate(&["schema", "docs", "--out", out_file.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(written, std::fs::read_to_string("docs/schemas.md").unwrap(), "`slate schema docs` output differs from docs/schemas.md");
    let _ = std::fs::remove_file(&out_file);
}
