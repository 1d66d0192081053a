//! Traps that a registry's compatibility check lets through, each a [`Finding`]:
//!
//! - `enum-symbol-without-default`: symbols added to an enum whose earlier version has no
//!   `default`. BACKWARD accepts it, but consumers still on the earlier schema fail on the
//!   first record carrying a new symbol.
//! - `invalid-union-default`: the Avro spec says a union field's default matches the FIRST
//!   branch. apache-avro accepts a default matching any branch; Java and Confluent clients
//!   reject such a schema or fail when they resolve the default.
//! - `renamed-field-without-alias`: a field removed and a field of the same type added at the
//!   same position. With a default on the new field every check passes, and every reader
//!   silently loses the old field's data: readers match fields by name or alias.
//! - `narrowed-numeric`: long→int, double→float (and any step back along int → long → float →
//!   double). FORWARD accepts it; old values no longer fit and precision is lost.
//!
//! `record-change-in-union` is reported by `check.rs`, where union branches are resolved.

use std::collections::HashMap;

use apache_avro::Schema;
use serde_json::Value;

use super::walk::{FlatField, Names, flatten, numeric_rank, type_name};
use super::{Finding, Rule};

/// Lints of one schema on its own.
pub fn lint_schema(schema: &Schema) -> Vec<Finding> {
    let names = Names::of(schema);
    let mut findings = Vec::new();
    for flat in flatten(schema) {
        let (Schema::Union(union), Some(default)) = (&flat.field.schema, &flat.field.default) else { continue };
        let Some(first) = union.variants().first().map(|branch| names.resolve(branch)) else { continue };
        if default_matches(first, default) {
            continue;
        }
        let matching = union.variants().iter().map(|branch| names.resolve(branch)).find(|branch| default_matches(branch, default));
        let fix = match matching {
            Some(Schema::Null) => "put \"null\" first in the union: [\"null\", ...]".to_owned(),
            Some(branch) => format!("move {} first in the union, or use a default of type {}", type_name(branch), type_name(first)),
            None => format!("use a default of type {}", type_name(first)),
        };
        findings.push(Finding::new(
            Rule::InvalidUnionDefault,
            &flat.path,
            format!(
                "default {default} does not match the first union branch {} (union {}): avro requires the default to match the first branch; java and confluent clients reject it",
                type_name(first),
                type_name(&flat.field.schema)
            ),
            fix,
        ));
    }
    findings
}

/// Lints of the change from `old` (named `label` in messages) to `new`.
pub fn lint_change(old: &Schema, new: &Schema, label: &str) -> Vec<Finding> {
    let (old_names, new_names) = (Names::of(old), Names::of(new));
    let (old_fields, new_fields) = (flatten(old), flatten(new));
    let mut findings = Vec::new();
    enum_symbols(&old_names, &new_names, &new_fields, label, &mut findings);
    renamed_fields(&old_fields, &new_fields, label, &mut findings);
    narrowed(&old_fields, &new_fields, &old_names, &new_names, label, &mut findings);
    findings
}

fn enum_symbols(old: &Names, new: &Names, new_fields: &[FlatField], label: &str, findings: &mut Vec<Finding>) {
    let mut enums: Vec<(&str, &Schema)> = new.iter().collect();
    enums.sort_by_key(|(name, _)| *name);
    for (name, schema) in enums {
        let (Schema::Enum(new_enum), Some(Schema::Enum(old_enum))) = (schema, old.get(name)) else { continue };
        if old_enum.default.is_some() {
            continue;
        }
        let added: Vec<&str> = new_enum.symbols.iter().filter(|s| !old_enum.symbols.contains(s)).map(String::as_str).collect();
        if added.is_empty() {
            continue;
        }
        let local = new_enum.name.name();
        let path = new_fields.iter().find(|flat| uses_type(&flat.field.schema, local)).map(|flat| flat.path.as_str()).unwrap_or("");
        findings.push(Finding::new(
            Rule::EnumSymbolWithoutDefault,
            path,
            format!(
                "enum {local} gained symbol(s) {} but {label} declares no enum default: consumers on it fail on the first record carrying a new symbol",
                added.join(", ")
            ),
            format!("release enum {local} with a \"default\" symbol first and let consumers upgrade, then add the symbol(s)"),
        ));
    }
}

/// Whether `schema` is, or holds through a union/array/map, the named type `local`.
fn uses_type(schema: &Schema, local: &str) -> bool {
    match schema {
        Schema::Enum(e) => e.name.name() == local,
        Schema::Ref { name } => name.name() == local,
        Schema::Union(u) => u.variants().iter().any(|v| uses_type(v, local)),
        Schema::Array(a) => uses_type(&a.items, local),
        Schema::Map(m) => uses_type(&m.types, local),
        _ => false,
    }
}

fn renamed_fields(old: &[FlatField], new: &[FlatField], label: &str, findings: &mut Vec<Finding>) {
    let by_record = |fields: &[FlatField]| -> HashMap<String, Vec<(usize, String, String)>> {
        let mut map: HashMap<String, Vec<(usize, String, String)>> = HashMap::new();
        for flat in fields {
            map.entry(flat.record.clone()).or_default().push((flat.position, flat.field.name.clone(), type_name(&flat.field.schema)));
        }
        map
    };
    let old_records = by_record(old);
    for flat in new {
        let Some(old_fields) = old_records.get(&flat.record) else { continue };
        let field = flat.field;
        let known = |name: &str| old_fields.iter().any(|(_, old_name, _)| old_name == name);
        if known(&field.name) || field.aliases.iter().any(|alias| known(alias)) {
            continue;
        }
        let still_present =
            |name: &str| new.iter().any(|n| n.record == flat.record && (n.field.name == name || n.field.aliases.iter().any(|a| a == name)));
        let ty = type_name(&field.schema);
        let renamed =
            old_fields.iter().find(|(position, name, old_ty)| *position == flat.position && *old_ty == ty && !still_present(name));
        if let Some((_, old_name, _)) = renamed {
            findings.push(Finding::new(
                Rule::RenamedFieldWithoutAlias,
                &flat.path,
                format!(
                    "field `{old_name}` of {label} looks renamed to `{}` (same type {ty}, same position) without an alias: readers match fields by name, so the data in `{old_name}` is dropped",
                    field.name
                ),
                format!("add \"aliases\": [\"{old_name}\"] to field `{}`", field.name),
            ));
        }
    }
}

fn narrowed(old: &[FlatField], new: &[FlatField], old_names: &Names, new_names: &Names, label: &str, findings: &mut Vec<Finding>) {
    for flat in new {
        let Some(before) = old.iter().find(|o| o.path == flat.path) else { continue };
        let (Some(was), Some(now)) = (widest(&before.field.schema, old_names), widest(&flat.field.schema, new_names)) else { continue };
        if now.0 < was.0 {
            findings.push(Finding::new(
                Rule::NarrowedNumeric,
                &flat.path,
                format!(
                    "numeric type narrowed from {} to {}: values written with {label} may not fit, and producers lose range or precision",
                    was.1, now.1
                ),
                format!("keep {}: avro promotes int → long → float → double, never back", was.1),
            ));
        }
    }
}

/// The widest numeric type of `schema` (its union branches included), with its name.
fn widest(schema: &Schema, names: &Names) -> Option<(u8, String)> {
    let schema = names.resolve(schema);
    match schema {
        Schema::Union(union) => union.variants().iter().filter_map(|branch| widest(branch, names)).max(),
        _ => numeric_rank(schema).map(|rank| (rank, type_name(schema))),
    }
}

/// Whether the JSON `default` is a valid value of the (non-union) type `schema`.
fn default_matches(schema: &Schema, default: &Value) -> bool {
    match schema {
        Schema::Null => default.is_null(),
        Schema::Boolean => default.is_boolean(),
        Schema::Float | Schema::Double => default.is_number(),
        Schema::Enum(e) => default.as_str().is_some_and(|s| e.symbols.iter().any(|symbol| symbol == s)),
        Schema::String
        | Schema::Bytes
        | Schema::Uuid(_)
        | Schema::Fixed(_)
        | Schema::Decimal(_)
        | Schema::BigDecimal
        | Schema::Duration(_) => default.is_string(),
        Schema::Array(_) => default.is_array(),
        Schema::Map(_) | Schema::Record(_) => default.is_object(),
        Schema::Union(_) => false,
        Schema::Ref { .. } => true,
        _ => numeric_rank(schema).is_some() && (default.is_i64() || default.is_u64()),
    }
}
