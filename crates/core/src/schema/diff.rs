//! Field-level difference between two versions of a record schema: fields added and removed,
//! type, default, doc and enum-symbol changes, by dotted field path (nested records included).

use std::fmt;

use super::walk::{Names, enum_of, flatten, type_name};
use apache_avro::Schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    TypeChanged,
    DefaultChanged,
    DocChanged,
    SymbolsChanged,
}

/// One change of one field; `before`/`after` are rendered for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub path: String,
    pub kind: ChangeKind,
    pub before: String,
    pub after: String,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match self.kind {
            ChangeKind::Added => write!(f, "+ {path}: added, {}", self.after),
            ChangeKind::Removed => write!(f, "- {path}: removed, was {}", self.before),
            ChangeKind::TypeChanged => write!(f, "~ {path}: type {} → {}", self.before, self.after),
            ChangeKind::DefaultChanged => write!(f, "~ {path}: default {} → {}", self.before, self.after),
            ChangeKind::DocChanged => write!(f, "~ {path}: doc {:?} → {:?}", self.before, self.after),
            ChangeKind::SymbolsChanged => write!(f, "~ {path}: enum symbols {}", self.after),
        }
    }
}

fn default_text(default: Option<&serde_json::Value>) -> String {
    default.map_or_else(|| "none".to_owned(), serde_json::Value::to_string)
}

fn described(schema: &Schema, default: Option<&serde_json::Value>) -> String {
    match default {
        Some(value) => format!("{} (default {value})", type_name(schema)),
        None => type_name(schema),
    }
}

/// Changes from `old` to `new`, removed fields first (in `old` order), then the rest in `new` order.
pub fn diff(old: &Schema, new: &Schema) -> Vec<FieldChange> {
    let (old_names, new_names) = (Names::of(old), Names::of(new));
    let (old_fields, new_fields) = (flatten(old), flatten(new));
    let change = |path: &str, kind, before: String, after: String| FieldChange { path: path.to_owned(), kind, before, after };
    let mut changes = Vec::new();
    for before in &old_fields {
        if !new_fields.iter().any(|n| n.path == before.path) {
            changes.push(change(
                &before.path,
                ChangeKind::Removed,
                described(&before.field.schema, before.field.default.as_ref()),
                String::new(),
            ));
        }
    }
    for after in &new_fields {
        let (path, field) = (&after.path, after.field);
        let Some(before) = old_fields.iter().find(|o| &o.path == path).map(|o| o.field) else {
            changes.push(change(path, ChangeKind::Added, String::new(), described(&field.schema, field.default.as_ref())));
            continue;
        };
        let (old_type, new_type) = (type_name(&before.schema), type_name(&field.schema));
        if old_type != new_type {
            changes.push(change(path, ChangeKind::TypeChanged, old_type, new_type));
        }
        if before.default != field.default {
            changes.push(change(
                path,
                ChangeKind::DefaultChanged,
                default_text(before.default.as_ref()),
                default_text(field.default.as_ref()),
            ));
        }
        if before.doc != field.doc {
            let doc = |d: &Option<String>| d.clone().unwrap_or_default();
            changes.push(change(path, ChangeKind::DocChanged, doc(&before.doc), doc(&field.doc)));
        }
        if let (Some(was), Some(now)) = (enum_of(&before.schema, &old_names), enum_of(&field.schema, &new_names)) {
            let added = now.symbols.iter().filter(|s| !was.symbols.contains(s)).map(|s| format!("+{s}"));
            let removed = was.symbols.iter().filter(|s| !now.symbols.contains(s)).map(|s| format!("-{s}"));
            let symbols: Vec<String> = added.chain(removed).collect();
            if !symbols.is_empty() {
                changes.push(change(path, ChangeKind::SymbolsChanged, String::new(), symbols.join(" ")));
            }
        }
    }
    changes
}
