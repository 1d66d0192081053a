//! Compatibility of a new schema with earlier versions, explained field by field.
//!
//! The verdict for each (earlier version, direction) pair is `registry::compat::check` with
//! BACKWARD (the new schema reads old data) or FORWARD (old readers read new data), i.e. the
//! registry's own rule. When it fails, a walk over writer and reader schemas names each field,
//! the rule it breaks and the fix; if the walk finds nothing specific, apache-avro's reason is
//! reported as `incompatible`. Findings inside a record that is a union branch are reported as
//! `record-change-in-union`: older checkers (Avro before 1.9, AVRO-1883) skip union branches.

use std::collections::HashSet;
use std::mem::discriminant;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use super::walk::{Names, full_name, numeric_rank, type_name};
use super::{Finding, PriorVersion, Rule};
use crate::registry::CompatibilityLevel;
use crate::registry::compat;

/// Who reads whose data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// BACKWARD: the new schema reads data written with an earlier version.
    NewReadsOld,
    /// FORWARD: readers still on an earlier version read data written with the new schema.
    OldReadsNew,
}

fn directions(level: CompatibilityLevel) -> &'static [Direction] {
    use CompatibilityLevel as L;
    match level {
        L::None => &[],
        L::Backward | L::BackwardTransitive => &[Direction::NewReadsOld],
        L::Forward | L::ForwardTransitive => &[Direction::OldReadsNew],
        L::Full | L::FullTransitive => &[Direction::NewReadsOld, Direction::OldReadsNew],
    }
}

/// Stands for the earlier version(s) in messages until findings are merged.
const VERSIONS: &str = "\u{0}";

/// Checks `new` against `priors` (newest first): the newest only, or all for `*_TRANSITIVE`.
/// A finding that several versions share is reported once, naming every version.
pub fn check_against(level: CompatibilityLevel, new: &Schema, priors: &[PriorVersion]) -> Vec<Finding> {
    let against = if level.is_transitive() { priors } else { priors.get(..1).unwrap_or(&[]) };
    let mut merged: Vec<(Finding, Vec<&str>)> = Vec::new();
    for prior in against {
        for &direction in directions(level) {
            let probe = if direction == Direction::NewReadsOld { CompatibilityLevel::Backward } else { CompatibilityLevel::Forward };
            let messages = compat::check(probe, new, &[(prior.number, prior.schema.clone())]);
            if messages.is_empty() {
                continue;
            }
            let (writer, reader) = match direction {
                Direction::NewReadsOld => (&prior.schema, new),
                Direction::OldReadsNew => (new, &prior.schema),
            };
            let mut explained = explain(writer, reader, direction, VERSIONS);
            if explained.is_empty() {
                let fix = "compare the schema with that version field by field (`slate schema diff`)";
                explained = messages
                    .into_iter()
                    .map(|message| Finding::new(Rule::Incompatible, "", format!("{message} ({VERSIONS})"), fix))
                    .collect();
            }
            for finding in explained {
                match merged.iter_mut().find(|(known, _)| *known == finding) {
                    Some((_, labels)) => labels.push(&prior.label),
                    None => merged.push((finding, vec![&prior.label])),
                }
            }
        }
    }
    merged
        .into_iter()
        .map(|(mut finding, labels)| {
            let labels = labels.join(", ");
            finding.message = finding.message.replace(VERSIONS, &labels);
            finding.fix = finding.fix.replace(VERSIONS, &labels);
            finding
        })
        .collect()
}

/// Field-level reasons why `reader` cannot read data written with `writer`.
pub fn explain(writer: &Schema, reader: &Schema, direction: Direction, label: &str) -> Vec<Finding> {
    let mut explainer = Explainer {
        writer_names: Names::of(writer),
        reader_names: Names::of(reader),
        direction,
        label,
        seen: HashSet::new(),
        findings: Vec::new(),
        failures: 0,
    };
    explainer.walk("", writer, reader, None);
    explainer.findings
}

struct Explainer<'a> {
    writer_names: Names<'a>,
    reader_names: Names<'a>,
    direction: Direction,
    label: &'a str,
    seen: HashSet<(String, String)>,
    findings: Vec<Finding>,
    /// Every failure seen, also those deduplicated away (for `readable`).
    failures: usize,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn leaf_readable(writer: &Schema, reader: &Schema) -> bool {
    matches!(SchemaCompatibility::can_read(writer, reader), Ok(Compatibility::Full))
}

impl<'a> Explainer<'a> {
    /// `union_record` is the record name when `writer`/`reader` sit inside a union branch.
    fn walk(&mut self, path: &str, writer: &'a Schema, reader: &'a Schema, union_record: Option<&str>) {
        let writer = self.writer_names.resolve(writer);
        let reader = self.reader_names.resolve(reader);
        match (writer, reader) {
            (Schema::Union(w), Schema::Union(r)) => {
                for branch in w.variants() {
                    match self.branch_for(branch, r.variants()) {
                        Some(matching) => self.walk_branch(path, branch, matching, union_record),
                        None => self.union_branch(path, branch, reader, union_record),
                    }
                }
            }
            (Schema::Union(w), _) => {
                if !w.variants().iter().all(|branch| self.readable(branch, reader)) {
                    self.type_changed(path, writer, reader, union_record);
                }
            }
            (_, Schema::Union(r)) => match self.branch_for(writer, r.variants()) {
                Some(matching) => self.walk_branch(path, writer, matching, union_record),
                None => self.type_changed(path, writer, reader, union_record),
            },
            (Schema::Record(w), Schema::Record(r)) => {
                if w.name.name() != r.name.name() {
                    return self.name_changed(path, w.name.name(), r.name.name(), union_record);
                }
                if !self.seen.insert((w.name.fullname(None), r.name.fullname(None))) {
                    return;
                }
                for field in &r.fields {
                    let field_path = join(path, &field.name);
                    let found = std::iter::once(&field.name)
                        .chain(field.aliases.iter())
                        .find_map(|name| w.fields.iter().find(|candidate| &candidate.name == name));
                    match found {
                        Some(w_field) => self.walk(&field_path, &w_field.schema, &field.schema, union_record),
                        None if field.default.is_none() => self.missing_default(&field_path, &field.schema, union_record),
                        None => {}
                    }
                }
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                if w.name.name() != r.name.name() {
                    return self.name_changed(path, w.name.name(), r.name.name(), union_record);
                }
                if r.default.is_some() {
                    return;
                }
                let missing: Vec<&str> = w.symbols.iter().filter(|s| !r.symbols.contains(s)).map(String::as_str).collect();
                if !missing.is_empty() {
                    self.enum_symbols(path, r.name.name(), &missing, union_record);
                }
            }
            (Schema::Array(w), Schema::Array(r)) => self.walk(&format!("{path}[]"), &w.items, &r.items, union_record),
            (Schema::Map(w), Schema::Map(r)) => self.walk(&format!("{path}{{}}"), &w.types, &r.types, union_record),
            _ => {
                if let (Some(w), Some(r)) = (full_name(writer), full_name(reader))
                    && w.rsplit('.').next() != r.rsplit('.').next()
                {
                    return self.name_changed(path, &w, &r, union_record);
                }
                if !leaf_readable(writer, reader) {
                    self.type_changed(path, writer, reader, union_record);
                }
            }
        }
    }

    fn walk_branch(&mut self, path: &str, writer: &'a Schema, reader: &'a Schema, union_record: Option<&str>) {
        match self.writer_names.resolve(writer) {
            Schema::Record(record) => {
                let name = record.name.name().to_owned();
                self.walk(path, writer, reader, Some(&name));
            }
            _ => self.walk(path, writer, reader, union_record),
        }
    }

    /// The reader union branch that a writer branch resolves to: same name for named types,
    /// same kind for arrays and maps, else the first branch that reads it (promotions included).
    fn branch_for(&self, writer: &'a Schema, branches: &'a [Schema]) -> Option<&'a Schema> {
        let writer = self.writer_names.resolve(writer);
        let resolved = |branch: &'a Schema| self.reader_names.resolve(branch);
        if let Some(name) = full_name(writer) {
            let local = name.rsplit('.').next().map(str::to_owned);
            return branches.iter().find(|b| full_name(resolved(b)).and_then(|n| n.rsplit('.').next().map(str::to_owned)) == local);
        }
        if matches!(writer, Schema::Array(_) | Schema::Map(_)) {
            return branches.iter().find(|b| discriminant(resolved(b)) == discriminant(writer));
        }
        branches
            .iter()
            .find(|b| discriminant(resolved(b)) == discriminant(writer))
            .or_else(|| branches.iter().find(|b| full_name(resolved(b)).is_none() && leaf_readable(writer, resolved(b))))
    }

    /// Whether `reader` reads every `writer` value, without reporting anything.
    fn readable(&mut self, writer: &'a Schema, reader: &'a Schema) -> bool {
        let (failures, num_findings, seen) = (self.failures, self.findings.len(), self.seen.clone());
        self.walk("", writer, reader, None);
        let readable = self.failures == failures;
        self.failures = failures;
        self.findings.truncate(num_findings);
        self.seen = seen;
        readable
    }

    fn push(&mut self, rule: Rule, path: &str, message: String, fix: String, union_record: Option<&str>) {
        self.failures += 1;
        let finding = match union_record {
            Some(record) => Finding::new(
                Rule::RecordChangeInUnion,
                path,
                format!("inside record {record}, a union branch: {message} (rule {rule})"),
                format!("{fix}; a record inside a union evolves under the same rules as a top-level one"),
            ),
            None => Finding::new(rule, path, message, fix),
        };
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    fn missing_default(&mut self, path: &str, reader: &Schema, union_record: Option<&str>) {
        let ty = type_name(reader);
        let (message, fix) = match self.direction {
            Direction::NewReadsOld => (
                format!("field added as {ty} without a default: the new schema cannot read records written with {}", self.label),
                format!(
                    "add a default, e.g. \"default\": {}, or make it optional: [\"null\", ...] with \"default\": null",
                    example_default(reader)
                ),
            ),
            Direction::OldReadsNew => (
                format!("field removed, but it has no default in {}: consumers still on that schema cannot read new records", self.label),
                "keep the field (say it is deprecated in its doc); only fields with a default in every version still read can be removed"
                    .to_owned(),
            ),
        };
        self.push(Rule::MissingDefault, path, message, fix, union_record);
    }

    fn type_changed(&mut self, path: &str, writer: &Schema, reader: &Schema, union_record: Option<&str>) {
        let (w, r) = (type_name(writer), type_name(reader));
        let (old, new) = if self.direction == Direction::NewReadsOld { (&w, &r) } else { (&r, &w) };
        let who = match self.direction {
            Direction::NewReadsOld => format!("the new schema cannot read {w} values written with {}", self.label),
            Direction::OldReadsNew => format!("consumers on {} cannot read {w} values written with the new schema", self.label),
        };
        let narrowing = matches!((numeric_rank(writer), numeric_rank(reader)), (Some(a), Some(b)) if a > b);
        let fix = if narrowing {
            format!("keep {old}: avro promotes int → long → float → double, never back")
        } else if matches!(writer, Schema::Union(_)) || matches!(reader, Schema::Union(_)) {
            format!("keep the type {old} (adding or removing union branches and null needs every reader to know them)")
        } else {
            format!("keep the type {old}; add a new field of type {new} with a default and deprecate this one")
        };
        self.push(Rule::TypeChanged, path, format!("type changed from {old} to {new}: {who}"), fix, union_record);
    }

    fn union_branch(&mut self, path: &str, branch: &Schema, reader: &Schema, union_record: Option<&str>) {
        let ty = type_name(branch);
        let (message, fix) = match self.direction {
            Direction::NewReadsOld => (
                format!("union branch {ty} was removed (now {}): records written with {} may hold it", type_name(reader), self.label),
                format!("keep the branch {ty} in the union"),
            ),
            Direction::OldReadsNew => (
                format!("union branch {ty} was added: consumers on {} cannot read values of that branch", self.label),
                "add union branches only under BACKWARD, after every consumer has upgraded".to_owned(),
            ),
        };
        self.push(Rule::UnionBranch, path, message, fix, union_record);
    }

    fn enum_symbols(&mut self, path: &str, name: &str, symbols: &[&str], union_record: Option<&str>) {
        let list = symbols.join(", ");
        let (message, fix) = match self.direction {
            Direction::NewReadsOld => (
                format!("enum {name} lost symbol(s) {list}, which records written with {} may hold", self.label),
                format!("keep the symbol(s) {list}, or give the enum a \"default\" symbol"),
            ),
            Direction::OldReadsNew => (
                format!("enum {name} gained symbol(s) {list}, unknown to consumers on {}, whose enum has no default", self.label),
                format!("give enum {name} a \"default\" in a release before the one that adds symbols"),
            ),
        };
        self.push(Rule::EnumSymbols, path, message, fix, union_record);
    }

    fn name_changed(&mut self, path: &str, writer: &str, reader: &str, union_record: Option<&str>) {
        let (old, new) = if self.direction == Direction::NewReadsOld { (writer, reader) } else { (reader, writer) };
        let message = format!("named type renamed from {old} to {new}: readers resolve named types by name ({})", self.label);
        self.push(Rule::NameChanged, path, message, format!("keep the name {old}"), union_record);
    }
}

/// A default that fits `schema`, for the "add a default" fix.
fn example_default(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "false".into(),
        Schema::String | Schema::Bytes | Schema::Uuid(_) => "\"\"".into(),
        Schema::Array(_) => "[]".into(),
        Schema::Map(_) => "{}".into(),
        Schema::Enum(e) => format!("\"{}\"", e.symbols.first().map(String::as_str).unwrap_or("")),
        Schema::Union(u) => u.variants().first().map(example_default).unwrap_or_else(|| "null".into()),
        Schema::Float | Schema::Double => "0.0".into(),
        Schema::Record(_) | Schema::Ref { .. } => "{...}".into(),
        _ if numeric_rank(schema).is_some() => "0".into(),
        _ => "...".into(),
    }
}
