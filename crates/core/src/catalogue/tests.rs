use super::*;

const META: &str = r#"{"name": "_meta", "type": {"type": "record", "name": "EnrichmentMeta", "fields": [
    {"name": "event_uuid", "type": "string"}]}}"#;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("slate-catalogue-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Path, file: &str, fields: &str) {
    let text = format!(r#"{{"type": "record", "name": "Invoice", "namespace": "acme.billing", "fields": [{fields}]}}"#);
    std::fs::write(dir.join(file), text).unwrap();
}

fn spec(schema: Option<&str>) -> BTreeMap<String, EntitySpec> {
    BTreeMap::from([("invoice".to_string(), EntitySpec { schema: schema.map(PathBuf::from), aliases: vec!["bill".into()], subject: None })])
}

#[test]
fn built_in_catalogue_is_the_six_example_records() {
    let c = Catalogue::built_in();
    let names: Vec<&str> = c.names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["production", "talent", "schedule", "budget", "cash_flow", "payment"]);
    assert_eq!(c.get(EntityName::from_static("cash_flow")).unwrap().record, "studio.finance.CashFlow");
    assert_eq!(EntityName::lookup("CashFlow").unwrap().as_str(), "cash_flow");
    assert_eq!(EntityName::lookup("cash_flows").unwrap().as_str(), "cash_flow");
}

#[test]
fn a_declared_entity_is_loaded_from_its_file() {
    let dir = TempDir::new();
    write(dir.path(), "Invoice.avsc", &format!(r#"{{"name": "id", "type": "string"}}, {{"name": "version", "type": "long"}}, {META}"#));
    let c = Catalogue::load(dir.path(), &spec(None), &Subjects::none()).unwrap();
    let invoice = c.get(EntityName::lookup("bill").unwrap()).unwrap();
    assert_eq!((invoice.name.as_str(), invoice.record.as_str()), ("invoice", "acme.billing.Invoice"));
    assert!(c.by_record("acme.billing.Invoice").is_some());
}

#[test]
fn bad_entries_name_the_entity_the_file_and_the_fix() {
    let dir = TempDir::new();
    let id = r#"{"name": "id", "type": "string"}"#;
    let version = r#"{"name": "version", "type": "long"}"#;
    let cases = [
        ("NoId.avsc", format!("{version}, {META}"), "field `id` of type string"),
        ("IntVersion.avsc", format!(r#"{id}, {{"name": "version", "type": "int"}}, {META}"#), "field `version` of type long"),
        ("NoMeta.avsc", format!("{id}, {version}"), "_meta"),
    ];
    for (file, fields, want) in cases {
        write(dir.path(), file, &fields);
        let e = Catalogue::load(dir.path(), &spec(Some(file)), &Subjects::none()).unwrap_err().to_string();
        assert!(e.contains("entity `invoice`") && e.contains(file) && e.contains(want), "{e}");
    }
    let e = Catalogue::load(dir.path(), &spec(Some("Missing.avsc")), &Subjects::none()).unwrap_err().to_string();
    assert!(e.contains("Missing.avsc") && e.contains("catalogue.entities.invoice.schema"), "{e}");
    std::fs::write(dir.path().join("Broken.avsc"), "{not json").unwrap();
    let e = Catalogue::load(dir.path(), &spec(Some("Broken.avsc")), &Subjects::none()).unwrap_err().to_string();
    assert!(e.contains("not a valid Avro schema"), "{e}");

    write(dir.path(), "Invoice.avsc", &format!("{id}, {version}, {META}"));
    let two = BTreeMap::from([
        ("invoice".to_string(), EntitySpec::default()),
        ("invoice_copy".to_string(), EntitySpec { schema: Some("Invoice.avsc".into()), ..Default::default() }),
    ]);
    let e = Catalogue::load(dir.path(), &two, &Subjects::none()).unwrap_err().to_string();
    assert!(e.contains("already the record of entity `invoice`"), "{e}");
    let bad_name = BTreeMap::from([("Invoice-2".to_string(), EntitySpec { schema: Some("Invoice.avsc".into()), ..Default::default() })]);
    assert!(Catalogue::load(dir.path(), &bad_name, &Subjects::none()).unwrap_err().to_string().contains("a-z, 0-9 and _"));
}

#[test]
fn a_subject_entry_takes_its_record_from_what_was_fetched() {
    let dir = TempDir::new();
    let text = format!(
        r#"{{"type": "record", "name": "Invoice", "namespace": "acme.billing", "fields": [{{"name": "id", "type": "string"}}, {{"name": "version", "type": "long"}}, {META}]}}"#
    );
    let by_subject = BTreeMap::from([("invoice".to_string(), EntitySpec { subject: Some("acme-invoice".into()), ..Default::default() })]);
    let fetched = Subjects::of("invoice", &text, "registry subject acme-invoice version 3 (id 7)");
    let c = Catalogue::load(dir.path(), &by_subject, &fetched).unwrap();
    let invoice = c.get(EntityName::lookup("invoice").unwrap()).unwrap();
    assert_eq!(
        (invoice.record.as_str(), invoice.origin.as_str()),
        ("acme.billing.Invoice", "registry subject acme-invoice version 3 (id 7)")
    );

    let e = Catalogue::load(dir.path(), &by_subject, &Subjects::none()).unwrap_err().to_string();
    assert!(e.contains("entity `invoice`") && e.contains("registry subject acme-invoice") && e.contains("not read"), "{e}");
    assert_eq!(Catalogue::load(dir.path(), &by_subject, &Subjects::ignored()).unwrap().names(), [], "left out, never half-read");

    let both = BTreeMap::from([(
        "invoice".to_string(),
        EntitySpec { subject: Some("acme-invoice".into()), schema: Some("Invoice.avsc".into()), ..Default::default() },
    )]);
    let e = Catalogue::load(dir.path(), &both, &fetched).unwrap_err().to_string();
    assert!(e.contains("both `schema` and `subject") && e.contains("keep one"), "{e}");
}

#[test]
fn pascal_case_names_the_default_file() {
    assert_eq!(pascal_case("purchase_order"), "PurchaseOrder");
    assert_eq!(pascal_case("invoice"), "Invoice");
}
