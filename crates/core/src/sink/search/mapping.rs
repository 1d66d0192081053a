//! Index mappings, derived from the embedded Avro schemas so the index follows the contract
//! (`schemas/avro/`) field by field, with no second list to keep in sync.
//!
//! Avro → Elasticsearch: `string` → `keyword` (ids, currency codes, months), except the
//! human-readable [`TEXT_FIELDS`] → `text` with a `keyword` sub-field for exact match, sort and
//! aggregations; `enum` and `uuid` → `keyword`; `long` (money in minor units, `version`) →
//! `long`; `int` → `integer`; `date` → `date` (`strict_date`, the `YYYY-MM-DD` the sinks receive);
//! `timestamp-millis` → `date` (`epoch_millis`); records → objects (so `_meta` is an ordinary,
//! searchable object field, not the mapping-level `_meta`); arrays → their items' type
//! (Elasticsearch fields are multi-valued); `["null", T]` → `T`.
//!
//! `dynamic: false`: a field the mapping does not know (a newer writer than this build) is kept in
//! `_source` but not indexed, never guessed and never a reason to reject a document.

use crate::catalogue::Entity;
use serde_json::{Map, Value as Json, json};

/// String fields analysed as full text (plus a `keyword` sub-field).
pub const TEXT_FIELDS: &[&str] = &["title", "name"];

/// The `mappings` object of the index of `entity` (also the body of `PUT <index>/_mapping`).
pub fn mappings(entity: &Entity) -> Json {
    let schema: Json = serde_json::from_str(&entity.text).expect("a catalogue schema is JSON (it parsed as Avro)");
    of_record(entity, &schema)
}

/// The mappings of `entity`'s index for the record `schema` (the JSON of a writer schema: a
/// newer one adds properties, merged in with `PUT <index>/_mapping`).
pub fn of_record(entity: &Entity, schema: &Json) -> Json {
    json!({
        "dynamic": false,
        "_meta": {
            "managed_by": "slate search sink",
            "entity": entity.name.as_str(),
            "avro_record": entity.record,
        },
        "properties": properties(schema),
    })
}

fn properties(record: &Json) -> Json {
    let fields = record.get("fields").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out = Map::new();
    for f in fields {
        let (Some(name), Some(ty)) = (f.get("name").and_then(Json::as_str), f.get("type")) else { continue };
        out.insert(name.to_string(), field(name, ty));
    }
    Json::Object(out)
}

fn field(name: &str, ty: &Json) -> Json {
    match ty {
        Json::String(primitive) => primitive_field(name, primitive),
        // A union: the mapping of its first non-null branch (the schemas only use ["null", T]).
        Json::Array(branches) => {
            branches.iter().find(|b| b.as_str() != Some("null")).map(|b| field(name, b)).unwrap_or_else(|| json!({"type": "keyword"}))
        }
        Json::Object(o) => match (o.get("logicalType").and_then(Json::as_str), o.get("type").and_then(Json::as_str)) {
            (Some("date"), _) => json!({"type": "date", "format": "strict_date"}),
            (Some("timestamp-millis"), _) => json!({"type": "date", "format": "epoch_millis"}),
            (Some("uuid"), _) => json!({"type": "keyword"}),
            (_, Some("enum")) => json!({"type": "keyword"}),
            (_, Some("record")) => json!({ "properties": properties(ty) }),
            (_, Some("array")) => o.get("items").map(|items| field(name, items)).unwrap_or_else(|| json!({"type": "keyword"})),
            // Arbitrary keys: stored in `_source`, not indexed.
            (_, Some("map")) => json!({"type": "object", "enabled": false}),
            (_, Some(primitive)) => primitive_field(name, primitive),
            _ => json!({"type": "keyword"}),
        },
        _ => json!({"type": "keyword"}),
    }
}

fn primitive_field(name: &str, primitive: &str) -> Json {
    match primitive {
        "string" if TEXT_FIELDS.contains(&name) => {
            json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
        }
        "long" => json!({"type": "long"}),
        "int" => json!({"type": "integer"}),
        "float" => json!({"type": "float"}),
        "double" => json!({"type": "double"}),
        "boolean" => json!({"type": "boolean"}),
        // `bytes`/`fixed` reach the sink as arrays of byte values.
        "bytes" | "fixed" => json!({"type": "short"}),
        _ => json!({"type": "keyword"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    fn example(kind: crate::event::EntityName) -> &'static Entity {
        Catalogue::example(kind)
    }

    #[test]
    fn production_mapping_types_each_kind_of_field() {
        let m = mappings(example(crate::catalogue::example::PRODUCTION));
        let p = &m["properties"];
        assert_eq!(p["id"]["type"], "keyword");
        assert_eq!(p["version"]["type"], "long");
        assert_eq!(p["title"]["type"], "text");
        assert_eq!(p["title"]["fields"]["keyword"]["type"], "keyword");
        assert_eq!(p["status"]["type"], "keyword", "enum");
        assert_eq!(p["currency"]["type"], "keyword");
        assert_eq!(p["budget_id"]["type"], "keyword", "optional string");
        assert_eq!(p["_meta"]["properties"]["event_ts"], json!({"type": "date", "format": "epoch_millis"}));
        assert_eq!(p["_meta"]["properties"]["event_uuid"]["type"], "keyword");
        assert_eq!(p["_meta"]["properties"]["change_type"]["type"], "keyword");
        assert_eq!(m["_meta"]["entity"], "production");
        assert_eq!(m["dynamic"], false);
    }

    #[test]
    fn money_dates_names_and_nested_records() {
        let pay = mappings(example(crate::catalogue::example::PAYMENT));
        assert_eq!(pay["properties"]["amount"]["type"], "long");
        assert_eq!(pay["properties"]["due_date"], json!({"type": "date", "format": "strict_date"}));
        let talent = mappings(example(crate::catalogue::example::TALENT));
        assert_eq!(talent["properties"]["name"]["type"], "text");
        assert_eq!(talent["properties"]["deals"]["properties"]["fee"]["type"], "long");
        assert_eq!(talent["properties"]["deals"]["properties"]["production_id"]["type"], "keyword");
        let cf = mappings(example(crate::catalogue::example::CASH_FLOW));
        assert_eq!(cf["properties"]["months"]["properties"]["month"]["type"], "keyword");
        assert_eq!(cf["properties"]["total"]["type"], "long");
        let sch = mappings(example(crate::catalogue::example::SCHEDULE));
        assert_eq!(sch["properties"]["launch_date"]["type"], "date");
    }

    #[test]
    fn every_avro_field_is_mapped() {
        for kind in crate::catalogue::example::ALL {
            let schema: Json = serde_json::from_str(&example(kind).text).unwrap();
            let m = mappings(example(kind));
            for f in schema["fields"].as_array().unwrap() {
                let name = f["name"].as_str().unwrap();
                assert!(m["properties"].get(name).is_some(), "{kind:?}.{name} has no mapping");
            }
        }
    }
}
