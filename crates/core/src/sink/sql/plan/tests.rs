use super::*;
use crate::catalogue::Catalogue;

fn plan(text: &str) -> Result<Table, PlanError> {
    Table::of(EntityName::from_static("invoice"), &Schema::parse_str(text).unwrap())
}

const INVOICE: &str = r#"{"type": "record", "name": "Invoice", "namespace": "acme", "fields": [
    {"name": "id", "type": "string"},
    {"name": "version", "type": "long"},
    {"name": "customer", "type": "string"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["OPEN", "PAID"]}},
    {"name": "issued_on", "type": {"type": "int", "logicalType": "date"}},
    {"name": "paid_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "total_cents", "type": "long"},
    {"name": "rate", "type": "double"},
    {"name": "export", "type": "boolean"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
        {"name": "sku", "type": "string"}, {"name": "cents", "type": "long"}]}}},
    {"name": "_meta", "type": {"type": "record", "name": "M", "fields": []}}
]}"#;

#[test]
fn every_avro_type_maps_to_a_documented_column() {
    let t = plan(INVOICE).unwrap();
    let cols: Vec<(&str, Col, bool)> = t.columns.iter().map(|c| (c.field.as_str(), c.col, c.required)).collect();
    assert_eq!(
        cols,
        [
            ("customer", Col::Text, true),
            ("note", Col::Text, false),
            ("status", Col::Text, true),
            ("issued_on", Col::Date, true),
            ("paid_at", Col::Timestamp, false),
            ("total_cents", Col::BigInt, true),
            ("rate", Col::Double, true),
            ("export", Col::Bool, true),
            ("address", Col::Json, true),
            ("tags", Col::Json, true),
        ]
    );
    assert_eq!(t.name, "\"invoice\"");
    assert_eq!(t.children.len(), 1);
    let lines = &t.children[0];
    assert_eq!((lines.table.as_str(), lines.parent_key.as_str(), lines.field.as_str()), ("\"invoice_line\"", "\"invoice_id\"", "lines"));
    assert_eq!(lines.columns.iter().map(|c| c.col).collect::<Vec<_>>(), [Col::Text, Col::BigInt]);
}

#[test]
fn the_example_plans_match_the_hand_written_demo_tables() {
    let cf = Catalogue::example(crate::catalogue::example::CASH_FLOW);
    let t = Table::of(cf.name, &cf.schema).unwrap();
    assert_eq!(t.children[0].table, "\"cash_flow_month\"");
    assert_eq!(t.children[0].columns[0].col, Col::Month, "the slate.sql.type attribute");
    let talent = Catalogue::example(crate::catalogue::example::TALENT);
    assert_eq!(Table::of(talent.name, &talent.schema).unwrap().children[0].table, "\"talent_deal\"");
}

#[test]
fn a_new_optional_field_is_an_addition_and_a_type_change_is_refused() {
    let v1 = plan(INVOICE).unwrap();
    let v2 = plan(&INVOICE.replace(
        r#"{"name": "rate", "type": "double"},"#,
        r#"{"name": "rate", "type": "double"}, {"name": "po", "type": ["null", "string"], "default": null},"#,
    ))
    .unwrap();
    let add = v1.additions(&v2).unwrap();
    assert_eq!(add.columns.len(), 1);
    assert_eq!((add.columns[0].0.as_str(), add.columns[0].1.field.as_str()), ("\"invoice\"", "po"));
    let grown = v1.extended(&add);
    assert!(grown.columns.iter().any(|c| c.field == "po" && !c.required));
    assert!(grown.additions(&v2).unwrap().is_empty(), "applying twice adds nothing");

    let v3 = plan(&INVOICE.replace(r#"{"name": "total_cents", "type": "long"}"#, r#"{"name": "total_cents", "type": "string"}"#)).unwrap();
    let e = v1.additions(&v3).unwrap_err().to_string();
    assert!(e.contains("entity `invoice`") && e.contains("total_cents") && e.contains("BIGINT") && e.contains("by hand"), "{e}");
}

#[test]
fn a_field_named_like_a_system_column_is_refused() {
    let e = plan(&INVOICE.replace(r#""name": "customer""#, r#""name": "deleted""#)).unwrap_err().to_string();
    assert!(e.contains("`deleted`") && e.contains("system column"), "{e}");
}
