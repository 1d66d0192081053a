//! Schema owners' tooling for the Avro contracts in `schemas/avro/`: check, register, diff, docs.
//!
//! Contracts:
//! - One `.avsc` file holds one top-level record. Its subject comes from the configured
//!   `registry.subject_name_strategy`, exactly as the enricher and sinks derive it:
//!   an entity record (`studio.finance.Production`) belongs to its enriched topic
//!   (`<enricher.output_topic_prefix><entity>.enriched`); `ChangeEvent` belongs to every input
//!   topic (`<enricher.input_topic_prefix><entity>.changes`, or `enricher.topics`), so the topic
//!   strategies give one subject per input topic and the record strategy gives one subject
//!   (`studio.finance.ChangeEvent`). Any other record is checked under its full name.
//! - The compatibility verdict of one schema against one earlier version is the registry's own
//!   (`registry::compat::check`, apache-avro's resolution rules, a partial match is a failure),
//!   so `check` passes exactly when the registry would accept the registration. `check.rs` only
//!   explains a failing verdict field by field, with the rule broken and the fix.
//! - Lints (`lint.rs`) flag traps the registry accepts: they compare the new schema with the
//!   latest earlier version only (the change being made), and fail the check like violations.

mod check;
mod diff;
mod docs;
mod git;
mod lint;
mod remote;
pub mod transfer;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};

use apache_avro::Schema;

use crate::config::Config;
use crate::event::EntityName;
use crate::registry::ClientError;

pub use check::{Direction, check_against};
pub use diff::{ChangeKind, FieldChange, diff};
pub use docs::render_docs;
pub use git::git_history;
pub use lint::{lint_change, lint_schema};
pub use remote::{Registered, SchemaRegistry};
pub use walk::type_name;

/// The namespace of every slate contract.
pub const NAMESPACE: &str = "studio.finance";

/// An error of the schema tooling (not a finding: findings are results).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid avro schema: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} must hold a record schema, found {found}")]
    NotARecord { path: PathBuf, found: String },
    #[error("no .avsc file in {0}")]
    EmptyDir(PathBuf),
    #[error("git {args} failed: {message}")]
    Git { args: String, message: String },
    #[error("{label} of {path} is not a valid avro schema: {message}")]
    InvalidHistory { path: PathBuf, label: String, message: String },
    #[error(transparent)]
    Registry(#[from] ClientError),
    #[error("subject {subject:?} has no version {version}")]
    UnknownVersion { subject: String, version: String },
}

/// One `.avsc` file: its text, the parsed schema and the record's full name.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub path: PathBuf,
    pub text: String,
    pub schema: Schema,
    pub full_name: String,
}

impl SchemaFile {
    /// Reads and parses `path`; the file must hold a record.
    pub fn load(path: &Path) -> Result<SchemaFile, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read { path: path.to_path_buf(), source })?;
        SchemaFile::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<SchemaFile, SchemaError> {
        let schema = Schema::parse_str(&text).map_err(|err| SchemaError::Parse { path: path.to_path_buf(), message: err.to_string() })?;
        let Schema::Record(record) = &schema else {
            return Err(SchemaError::NotARecord { path: path.to_path_buf(), found: type_name(&schema) });
        };
        let full_name = record.name.fullname(None);
        Ok(SchemaFile { path: path.to_path_buf(), text, schema, full_name })
    }

    /// The file name, e.g. `Production.avsc`.
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string())
    }

    /// The entity this record is the enriched form of, if any.
    pub fn entity(&self, config: &Config) -> Option<EntityName> {
        config.entities().by_record(&self.full_name).map(|e| e.name)
    }

    /// The registry subjects of this record under `config` (see the module doc).
    pub fn subjects(&self, config: &Config) -> Vec<String> {
        let strategy = config.registry.subject_name_strategy;
        if let Some(kind) = self.entity(config) {
            return vec![strategy.value_subject(&config.enricher.output_topic(kind), &self.full_name)];
        }
        if self.full_name == format!("{NAMESPACE}.ChangeEvent") {
            let mut subjects: Vec<String> = config
                .enricher
                .input_topics(config.entities())
                .iter()
                .map(|topic| strategy.value_subject(topic, &self.full_name))
                .collect();
            subjects.dedup();
            return subjects;
        }
        vec![self.full_name.clone()]
    }
}

/// Every `.avsc` file of `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<SchemaFile>, SchemaError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SchemaError::Read { path: dir.to_path_buf(), source })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| SchemaError::Read { path: dir.to_path_buf(), source })?.path();
        if path.extension().is_some_and(|ext| ext == "avsc") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(SchemaError::EmptyDir(dir.to_path_buf()));
    }
    paths.sort();
    paths.iter().map(|path| SchemaFile::load(path)).collect()
}

/// An earlier version a schema is checked against.
#[derive(Debug, Clone)]
pub struct PriorVersion {
    /// Registry version, or the ordinal of the git commit (1 = oldest).
    pub number: u32,
    /// How the report names it: `version 3` or `version 2 (git 1a2b3c4)`.
    pub label: String,
    pub schema: Schema,
}

/// The rule a finding breaks. Compatibility rules come first, then the lints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A reader field has no writer counterpart and no default.
    MissingDefault,
    /// A field's type cannot be resolved from the writer's type.
    TypeChanged,
    /// Writer enum symbols the reader lacks, and the reader enum has no default.
    EnumSymbols,
    /// A writer union branch that no reader branch can read.
    UnionBranch,
    /// A named type's name changed.
    NameChanged,
    /// An incompatibility inside a record that is a union branch.
    RecordChangeInUnion,
    /// Anything else apache-avro rejects (fixed size, decimal precision, ...).
    Incompatible,
    /// Lint: enum symbols added while earlier readers' enum has no default.
    EnumSymbolWithoutDefault,
    /// Lint: a union field default that does not match the union's first branch.
    InvalidUnionDefault,
    /// Lint: a field removed and one added with the same type at the same position.
    RenamedFieldWithoutAlias,
    /// Lint: long→int, double→float and other narrowing numeric changes.
    NarrowedNumeric,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingDefault => "missing-default",
            Self::TypeChanged => "type-changed",
            Self::EnumSymbols => "enum-symbols",
            Self::UnionBranch => "union-branch",
            Self::NameChanged => "name-changed",
            Self::RecordChangeInUnion => "record-change-in-union",
            Self::Incompatible => "incompatible",
            Self::EnumSymbolWithoutDefault => "enum-symbol-without-default",
            Self::InvalidUnionDefault => "invalid-union-default",
            Self::RenamedFieldWithoutAlias => "renamed-field-without-alias",
            Self::NarrowedNumeric => "narrowed-numeric",
        }
    }

    /// Whether this rule is one of the traps beyond the registry's check.
    pub fn is_lint(self) -> bool {
        matches!(self, Self::EnumSymbolWithoutDefault | Self::InvalidUnionDefault | Self::RenamedFieldWithoutAlias | Self::NarrowedNumeric)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem: where (field path inside the record), which rule, what happened, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// Dotted field path, e.g. `_meta.change_type`; empty for the record itself.
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn new(rule: Rule, path: &str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { rule, path: path.to_owned(), message: message.into(), fix: fix.into() }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "(record)" } else { &self.path };
        write!(f, "field `{path}` [{}]: {}\n    fix: {}", self.rule, self.message, self.fix)
    }
}

/// Checks `new` against `priors` (newest first) under `level`, then lints the change against the
/// newest prior and the schema alone. Lint findings on a path that already has a compatibility
/// finding are dropped, so one mistake is reported once.
pub fn check_all(level: crate::registry::CompatibilityLevel, new: &Schema, priors: &[PriorVersion]) -> Vec<Finding> {
    let mut findings = check_against(level, new, priors);
    let mut lints = lint_schema(new);
    if let Some(latest) = priors.first() {
        lints.extend(lint_change(&latest.schema, new, &latest.label));
    }
    for lint in lints {
        if !findings.iter().any(|f| f.path == lint.path && !f.rule.is_lint()) && !findings.contains(&lint) {
            findings.push(lint);
        }
    }
    findings
}
