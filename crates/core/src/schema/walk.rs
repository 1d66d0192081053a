//! Helpers over parsed Avro schemas: the named types of a schema (to resolve `Schema::Ref`),
//! short type names for reports and docs, and the numeric promotion order.

use std::collections::{HashMap, HashSet};

use apache_avro::Schema;
use apache_avro::schema::{DecimalSchema, EnumSchema, RecordField, UuidSchema};

/// The named types (record, enum, fixed) defined anywhere in one schema, by full name.
#[derive(Debug, Default)]
pub struct Names<'a> {
    by_name: HashMap<String, &'a Schema>,
}

impl<'a> Names<'a> {
    pub fn of(schema: &'a Schema) -> Names<'a> {
        let mut names = Names::default();
        names.collect(schema);
        names
    }

    fn collect(&mut self, schema: &'a Schema) {
        match schema {
            Schema::Record(record) if self.by_name.insert(record.name.fullname(None), schema).is_none() => {
                for field in &record.fields {
                    self.collect(&field.schema);
                }
            }
            Schema::Enum(e) => {
                self.by_name.insert(e.name.fullname(None), schema);
            }
            Schema::Fixed(f) => {
                self.by_name.insert(f.name.fullname(None), schema);
            }
            Schema::Array(array) => self.collect(&array.items),
            Schema::Map(map) => self.collect(&map.types),
            Schema::Union(union) => union.variants().iter().for_each(|variant| self.collect(variant)),
            _ => {}
        }
    }

    /// The definition of `full_name`.
    pub fn get(&self, full_name: &str) -> Option<&'a Schema> {
        self.by_name.get(full_name).copied()
    }

    /// Every named type, by full name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a Schema)> + '_ {
        self.by_name.iter().map(|(name, schema)| (name.as_str(), *schema))
    }

    /// `schema`, or the definition it refers to.
    pub fn resolve(&self, schema: &'a Schema) -> &'a Schema {
        match schema {
            Schema::Ref { name } => self.by_name.get(&name.fullname(None)).copied().unwrap_or(schema),
            _ => schema,
        }
    }
}

/// A record field with its dotted path (`_meta.event_uuid`, `lines[].category`), the full name
/// of the record that declares it and its position there.
#[derive(Debug, Clone)]
pub struct FlatField<'a> {
    pub path: String,
    pub record: String,
    pub position: usize,
    pub field: &'a RecordField,
}

/// Every field of `schema`, depth first in declaration order. A named record is expanded where
/// it is defined, not where it is referenced again.
pub fn flatten(schema: &Schema) -> Vec<FlatField<'_>> {
    fn walk<'a>(prefix: &str, schema: &'a Schema, seen: &mut HashSet<String>, out: &mut Vec<FlatField<'a>>) {
        match schema {
            Schema::Record(record) => {
                let record_name = record.name.fullname(None);
                if !seen.insert(record_name.clone()) {
                    return;
                }
                for (position, field) in record.fields.iter().enumerate() {
                    let path = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
                    out.push(FlatField { path: path.clone(), record: record_name.clone(), position, field });
                    walk(&path, &field.schema, seen, out);
                }
            }
            Schema::Union(union) => union.variants().iter().for_each(|variant| walk(prefix, variant, seen, out)),
            Schema::Array(array) => walk(&format!("{prefix}[]"), &array.items, seen, out),
            Schema::Map(map) => walk(&format!("{prefix}{{}}"), &map.types, seen, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", schema, &mut HashSet::new(), &mut out);
    out
}

/// A short, human name of a type: `string`, `timestamp-millis`, `null | string`,
/// `array<string>`, `enum ProductionStatus`, `record EnrichmentMeta`.
pub fn type_name(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(array) => format!("array<{}>", type_name(&array.items)),
        Schema::Map(map) => format!("map<{}>", type_name(&map.types)),
        Schema::Union(union) => union.variants().iter().map(type_name).collect::<Vec<_>>().join(" | "),
        Schema::Record(record) => format!("record {}", record.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(f) => format!("fixed {}({})", f.name.name(), f.size),
        Schema::Decimal(DecimalSchema { precision, scale, .. }) => format!("decimal({precision},{scale})"),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid(UuidSchema::String) => "uuid".into(),
        Schema::Uuid(_) => "uuid (bytes)".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration(_) => "duration".into(),
        Schema::Ref { name } => name.name().to_owned(),
    }
}

/// Position of a numeric type in Avro's promotion order (int → long → float → double); logical
/// types count as their physical type. `None` for non-numeric types.
pub fn numeric_rank(schema: &Schema) -> Option<u8> {
    match schema {
        Schema::Int | Schema::Date | Schema::TimeMillis => Some(0),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Some(1),
        Schema::Float => Some(2),
        Schema::Double => Some(3),
        _ => None,
    }
}

/// The enum a field holds, directly or through a union, array or map.
pub fn enum_of<'a>(schema: &'a Schema, names: &Names<'a>) -> Option<&'a EnumSchema> {
    match names.resolve(schema) {
        Schema::Enum(e) => Some(e),
        Schema::Union(u) => u.variants().iter().find_map(|v| enum_of(v, names)),
        Schema::Array(a) => enum_of(&a.items, names),
        Schema::Map(m) => enum_of(&m.types, names),
        _ => None,
    }
}

/// The full name of a named type (after resolving refs), for matching union branches.
pub fn full_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        Schema::Enum(e) => Some(e.name.fullname(None)),
        Schema::Fixed(f) => Some(f.name.fullname(None)),
        Schema::Ref { name } => Some(name.fullname(None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_refs_and_type_names_are_short() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"a","type":{"type":"enum","name":"E","symbols":["X"]}},
                {"name":"b","type":["null","E"]},
                {"name":"c","type":{"type":"array","items":{"type":"long","logicalType":"timestamp-millis"}}}]}"#,
        )
        .unwrap();
        let names = Names::of(&schema);
        let Schema::Record(record) = &schema else { panic!("record") };
        let Schema::Union(union) = &record.fields[1].schema else { panic!("union") };
        assert!(matches!(names.resolve(&union.variants()[1]), Schema::Enum(_)));
        assert_eq!(type_name(&record.fields[1].schema), "null | E");
        assert_eq!(type_name(&record.fields[2].schema), "array<timestamp-millis>");
        assert_eq!(numeric_rank(&Schema::Double), Some(3));
    }
}
