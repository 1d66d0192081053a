//! The SQL table plan of an entity, derived from its Avro record (like Kafka Connect JDBC's
//! `auto.create`), and its evolution when a newer writer schema adds fields (`auto.evolve`).
//!
//! Type mapping (PostgreSQL / SQLite):
//! - `string`, `enum`, `uuid` → `TEXT`; a string field with `"slate.sql.type": "month"`
//!   (`YYYY-MM`) → `DATE` of the month's first day (SQLite: `TEXT` `YYYY-MM-01`)
//! - `int`, `long` → `BIGINT` / `INTEGER`
//! - `float`, `double` → `DOUBLE PRECISION` / `REAL`
//! - `boolean` → `BOOLEAN` / `INTEGER` 0/1
//! - `date` → `DATE` / `TEXT` `YYYY-MM-DD`
//! - `timestamp-millis` → `TIMESTAMPTZ` / `INTEGER` epoch milliseconds
//! - `["null", T]` → `T`, nullable
//! - an array of records → a child table `<entity>_<field without a trailing s>` keyed by
//!   `<entity>_id` + `ordinal`, replaced whenever the parent row is written
//! - anything else (nested records, maps, bytes, decimals, arrays of non-records, other unions)
//!   → `JSONB` / `TEXT` holding the value as JSON
//!
//! Every business column is nullable in SQL (tombstones null them); required-ness is checked in
//! Rust when a record is validated. Identifiers are always quoted, so any Avro field name works.

use crate::catalogue::EntityName;
use apache_avro::Schema;
use apache_avro::schema::{Name, RecordField, ResolvedSchema};
use std::collections::HashMap;

/// Columns every entity table has; a business field of the same name cannot be stored.
pub(super) const SYSTEM_COLUMNS: &[&str] = &["id", "version", "deleted", "event_ts", "updated_at"];

/// A business column's type, as the record carries it and as SQL stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
    Text,
    BigInt,
    Double,
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM`, stored as the month's first day.
    Month,
    /// Epoch milliseconds.
    Timestamp,
    /// Any value, as JSON text.
    Json,
}

impl Col {
    /// The PostgreSQL array type the column is bound as (all but integers travel as text and are
    /// cast in SQL).
    pub(super) fn bind_type(self) -> &'static str {
        match self {
            Col::BigInt | Col::Timestamp => "int8[]",
            _ => "text[]",
        }
    }

    /// The expression turning the bound value `u.<ident>` into the column's type.
    pub(super) fn select_expr(self, ident: &str) -> String {
        match self {
            Col::Date | Col::Month => format!("u.{ident}::date"),
            Col::Double => format!("u.{ident}::float8"),
            Col::Bool => format!("u.{ident}::boolean"),
            Col::Json => format!("u.{ident}::jsonb"),
            Col::Timestamp => format!("to_timestamp(u.{ident}::float8 / 1000)"),
            Col::Text | Col::BigInt => format!("u.{ident}"),
        }
    }

    /// The column type in PostgreSQL DDL, and as `information_schema.columns.data_type` says it.
    pub(super) fn pg_type(self) -> (&'static str, &'static str) {
        match self {
            Col::Text => ("TEXT", "text"),
            Col::BigInt => ("BIGINT", "bigint"),
            Col::Double => ("DOUBLE PRECISION", "double precision"),
            Col::Bool => ("BOOLEAN", "boolean"),
            Col::Date | Col::Month => ("DATE", "date"),
            Col::Timestamp => ("TIMESTAMPTZ", "timestamp with time zone"),
            Col::Json => ("JSONB", "jsonb"),
        }
    }

    /// The column type in SQLite (STRICT tables).
    pub(super) fn sqlite_type(self) -> &'static str {
        match self {
            Col::BigInt | Col::Bool | Col::Timestamp => "INTEGER",
            Col::Double => "REAL",
            _ => "TEXT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    /// The record's field name (the JSON key).
    pub field: String,
    /// The quoted SQL identifier.
    pub ident: String,
    pub col: Col,
    /// A live record must carry a non-null value.
    pub required: bool,
}

/// An array-of-records field stored as a child table, one row per element (in order).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Child {
    /// Quoted table name.
    pub table: String,
    /// The record's field holding the array.
    pub field: String,
    /// Quoted column referencing the parent id.
    pub parent_key: String,
    pub columns: Vec<Column>,
}

/// An entity table: `id`, `version`, `deleted`, `event_ts`, `updated_at`, then `columns`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Table {
    pub entity: EntityName,
    /// Quoted table name (the entity name).
    pub name: String,
    pub columns: Vec<Column>,
    pub children: Vec<Child>,
}

/// Why a record cannot be stored in SQL; names the entity, the field and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("SQL sink, entity `{entity}`, field `{field}`: {message}")]
pub struct PlanError {
    pub entity: String,
    pub field: String,
    pub message: String,
}

pub(super) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Table {
    /// The plan of `entity`'s record `schema`.
    pub(super) fn of(entity: EntityName, schema: &Schema) -> Result<Table, PlanError> {
        let fail = |field: &str, message: String| PlanError { entity: entity.to_string(), field: field.into(), message };
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| fail("(record)", e.to_string()))?;
        let names = resolved.get_names();
        let Schema::Record(record) = schema else { return Err(fail("(record)", "the schema is not a record".into())) };
        let mut table = Table { entity, name: quote(entity.as_str()), columns: Vec::new(), children: Vec::new() };
        for f in record.fields.iter().filter(|f| !matches!(f.name.as_str(), "id" | "version" | "_meta")) {
            if SYSTEM_COLUMNS.contains(&f.name.to_ascii_lowercase().as_str()) {
                return Err(fail(&f.name, format!("collides with the system column `{}`; rename the field", f.name)));
            }
            match child_record(&f.schema, names) {
                Some(items) => {
                    let table_name = format!("{}_{}", entity, f.name.strip_suffix('s').unwrap_or(&f.name));
                    let parent_key = format!("{entity}_id");
                    let mut columns = Vec::new();
                    for item in &items.fields {
                        if item.name == parent_key || item.name == "ordinal" {
                            return Err(fail(&format!("{}.{}", f.name, item.name), "collides with the child table's key columns".into()));
                        }
                        columns.push(column(item, names));
                    }
                    table.children.push(Child {
                        table: quote(&table_name),
                        field: f.name.clone(),
                        parent_key: quote(&parent_key),
                        columns,
                    });
                }
                None => table.columns.push(column(f, names)),
            }
        }
        Ok(table)
    }

    /// What `newer` (the plan of a newer writer schema) adds to `self`: new columns and child
    /// tables. A field whose type changed is refused: SQL cannot narrow or reinterpret a column
    /// holding data without a human deciding how.
    pub(super) fn additions(&self, newer: &Table) -> Result<Additions, PlanError> {
        let mut out = Additions::default();
        let changed = |field: &str, old: Col, new: Col| PlanError {
            entity: self.entity.to_string(),
            field: field.into(),
            message: format!(
                "the table stores it as {} but the writer schema makes it {}; migrate the column by hand \
                 (or give the field a new name) and restart the sink: nothing is committed until then",
                old.pg_type().0,
                new.pg_type().0
            ),
        };
        for c in &newer.columns {
            match self.columns.iter().find(|o| o.field == c.field) {
                Some(o) if o.col != c.col => return Err(changed(&c.field, o.col, c.col)),
                Some(_) => {}
                None => out.columns.push((self.name.clone(), c.clone())),
            }
        }
        for child in &newer.children {
            match self.children.iter().find(|o| o.field == child.field) {
                None => out.children.push(child.clone()),
                Some(o) => {
                    for c in &child.columns {
                        match o.columns.iter().find(|oc| oc.field == c.field) {
                            Some(oc) if oc.col != c.col => return Err(changed(&format!("{}.{}", child.field, c.field), oc.col, c.col)),
                            Some(_) => {}
                            None => out.columns.push((o.table.clone(), c.clone())),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// `self` with `additions` applied (new columns are never required: old rows lack them).
    pub(super) fn extended(&self, additions: &Additions) -> Table {
        let mut t = self.clone();
        for (table, c) in &additions.columns {
            let c = Column { required: false, ..c.clone() };
            if *table == t.name {
                t.columns.push(c);
            } else if let Some(child) = t.children.iter_mut().find(|ch| ch.table == *table) {
                child.columns.push(c);
            }
        }
        t.children.extend(additions.children.iter().cloned());
        t
    }
}

/// Columns (table, column) and child tables a newer writer schema adds.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Additions {
    pub columns: Vec<(String, Column)>,
    pub children: Vec<Child>,
}

impl Additions {
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.children.is_empty()
    }
}

/// The record of an array-of-records field (directly or behind a nullable union or a name).
fn child_record<'s>(schema: &'s Schema, names: &'s HashMap<Name, &'s Schema>) -> Option<&'s apache_avro::schema::RecordSchema> {
    match non_null(schema) {
        Schema::Array(a) => match resolve(&a.items, names) {
            Schema::Record(r) => Some(r),
            _ => None,
        },
        _ => None,
    }
}

fn non_null(schema: &Schema) -> &Schema {
    if let Schema::Union(u) = schema {
        let branches: Vec<&Schema> = u.variants().iter().filter(|v| !matches!(v, Schema::Null)).collect();
        if let [only] = branches.as_slice()
            && u.variants().len() == 2
        {
            return only;
        }
    }
    schema
}

fn resolve<'s>(schema: &'s Schema, names: &'s HashMap<Name, &'s Schema>) -> &'s Schema {
    match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        other => other,
    }
}

fn column(f: &RecordField, names: &HashMap<Name, &Schema>) -> Column {
    let nullable_union = matches!(&f.schema, Schema::Union(_)) && !std::ptr::eq(non_null(&f.schema), &f.schema);
    let month = f.custom_attributes.get("slate.sql.type").and_then(|v| v.as_str()) == Some("month");
    let col = match resolve(non_null(&f.schema), names) {
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) if month => Col::Month,
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => Col::Text,
        Schema::Int | Schema::Long => Col::BigInt,
        Schema::Float | Schema::Double => Col::Double,
        Schema::Boolean => Col::Bool,
        Schema::Date => Col::Date,
        Schema::TimestampMillis => Col::Timestamp,
        _ => Col::Json,
    };
    Column { field: f.name.clone(), ident: quote(&f.name), col, required: !nullable_union && !matches!(f.schema, Schema::Null) }
}

#[cfg(test)]
mod tests;
