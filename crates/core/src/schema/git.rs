//! Earlier versions of a schema file from git, so a change can be checked without a registry.
//!
//! The versions of `dir/file` are the file's contents at every commit that touched it, up to and
//! including `reference` (`git log --format=%H REF -- file`, then `git show COMMIT:./file`),
//! newest first, numbered from 1 = oldest. A commit that deleted the file is skipped; a file
//! that does not exist at `reference` has no earlier versions (a new schema).

use std::path::Path;
use std::process::Command;

use super::{PriorVersion, SchemaError, SchemaFile};

/// Earlier versions of `file_name` in `dir` at `reference`, newest first.
pub fn git_history(dir: &Path, file_name: &str, reference: &str) -> Result<Vec<PriorVersion>, SchemaError> {
    let commit = git(dir, &["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")])
        .map_err(|_| SchemaError::Git { args: format!("rev-parse {reference}"), message: format!("unknown revision {reference:?}") })?;
    let commits = git(dir, &["log", "--format=%H", commit.trim(), "--", file_name])?;
    let commits: Vec<&str> = commits.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let mut texts: Vec<(&str, String)> = Vec::new();
    for commit in &commits {
        // The commit that deleted the file touched it too; it has no version to check against.
        let Ok(text) = git(dir, &["show", &format!("{commit}:./{file_name}")]) else { continue };
        texts.push((commit, text));
    }
    let total = texts.len();
    texts
        .into_iter()
        .enumerate()
        .map(|(index, (commit, text))| {
            let number = u32::try_from(total - index).unwrap_or(u32::MAX);
            let label = format!("version {number} (git {})", &commit[..commit.len().min(10)]);
            let parsed = SchemaFile::parse(&dir.join(file_name), text).map_err(|err| SchemaError::InvalidHistory {
                path: dir.join(file_name),
                label: label.clone(),
                message: err.to_string(),
            })?;
            Ok(PriorVersion { number, label, schema: parsed.schema })
        })
        .collect()
}

/// Runs `git -C dir args`; stdout on success.
fn git(dir: &Path, args: &[&str]) -> Result<String, SchemaError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|err| SchemaError::Git { args: args.join(" "), message: format!("cannot run git: {err}") })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SchemaError::Git { args: args.join(" "), message: stderr.trim().to_owned() });
    }
    String::from_utf8(output.stdout)
        .map_err(|err| SchemaError::Git { args: args.join(" "), message: format!("output is not utf-8: {err}") })
}
