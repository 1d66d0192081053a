//! The rules of `slate schema check`: compatibility findings (field, rule, fix) in every
//! direction, the lints beyond the registry, and the field-level diff. Pure: no services.

use apache_avro::Schema;
use slate::registry::CompatibilityLevel as Level;
use slate::schema::{Finding, PriorVersion, Rule, check_all, diff, lint_change, lint_schema};

fn record(fields: &str) -> Schema {
    Schema::parse_str(&format!(r#"{{"type":"record","name":"R","namespace":"n","fields":[{fields}]}}"#)).unwrap()
}

fn prior(number: u32, schema: Schema) -> PriorVersion {
    PriorVersion { number, label: format!("version {number}"), schema }
}

fn rules(findings: &[Finding]) -> Vec<(Rule, &str)> {
    findings.iter().map(|f| (f.rule, f.path.as_str())).collect()
}

const V1: &str = r#"{"name":"id","type":"string"},{"name":"title","type":"string"}"#;

#[test]
fn a_field_added_without_default_breaks_backward_and_says_add_a_default() {
    let v2 = record(&format!(r#"{V1},{{"name":"rating","type":"int"}}"#));
    let findings = check_all(Level::Backward, &v2, &[prior(1, record(V1))]);
    assert_eq!(rules(&findings), [(Rule::MissingDefault, "rating")]);
    let text = findings[0].to_string();
    assert!(text.contains("field `rating` [missing-default]") && text.contains("version 1") && text.contains("add a default"), "{text}");
    assert!(check_all(Level::Forward, &v2, &[prior(1, record(V1))]).is_empty(), "old readers ignore the new field");
}

#[test]
fn a_field_removed_without_default_breaks_forward() {
    let v2 = record(r#"{"name":"id","type":"string"}"#);
    let findings = check_all(Level::Forward, &v2, &[prior(1, record(V1))]);
    assert_eq!(rules(&findings), [(Rule::MissingDefault, "title")]);
    assert!(findings[0].message.contains("removed") && findings[0].fix.contains("keep the field"), "{}", findings[0]);
    assert!(check_all(Level::Backward, &v2, &[prior(1, record(V1))]).is_empty());
    assert_eq!(check_all(Level::Full, &v2, &[prior(1, record(V1))]).len(), 1);
}

#[test]
fn an_optional_field_with_default_passes_every_mode() {
    let v2 = record(&format!(r#"{V1},{{"name":"rating","type":["null","int"],"default":null}}"#));
    for level in Level::ALL {
        assert!(check_all(level, &v2, &[prior(1, record(V1))]).is_empty(), "{level}");
    }
}

#[test]
fn a_type_change_names_both_types_and_narrowing_says_keep_the_wider() {
    let v1 = record(r#"{"name":"amount","type":"long"}"#);
    let to_string = check_all(Level::Backward, &record(r#"{"name":"amount","type":"string"}"#), &[prior(1, v1.clone())]);
    assert_eq!(rules(&to_string), [(Rule::TypeChanged, "amount")]);
    assert!(to_string[0].message.contains("from long to string"), "{}", to_string[0]);
    let narrowed = check_all(Level::Backward, &record(r#"{"name":"amount","type":"int"}"#), &[prior(1, v1)]);
    assert_eq!(rules(&narrowed), [(Rule::TypeChanged, "amount")], "one finding per mistake: {narrowed:?}");
    assert!(narrowed[0].fix.contains("keep long"), "{}", narrowed[0]);
}

#[test]
fn enum_symbol_removal_breaks_backward() {
    let v1 = record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B"]}}"#);
    let v2 = record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A"]}}"#);
    let findings = check_all(Level::Backward, &v2, &[prior(1, v1)]);
    assert_eq!(rules(&findings), [(Rule::EnumSymbols, "s")]);
    assert!(findings[0].message.contains("lost symbol(s) B"), "{}", findings[0]);
}

#[test]
fn a_record_change_inside_a_union_is_its_own_finding() {
    let address = |extra: &str| {
        record(&format!(
            r#"{{"name":"addr","type":["null",{{"type":"record","name":"Address","fields":[{{"name":"street","type":"string"}}{extra}]}}],"default":null}}"#
        ))
    };
    let findings = check_all(Level::Backward, &address(r#",{"name":"zip","type":"string"}"#), &[prior(1, address(""))]);
    assert_eq!(rules(&findings), [(Rule::RecordChangeInUnion, "addr.zip")]);
    assert!(findings[0].message.contains("inside record Address") && findings[0].fix.contains("add a default"), "{}", findings[0]);
    let with_default = address(r#",{"name":"zip","type":"string","default":""}"#);
    assert!(check_all(Level::FullTransitive, &with_default, &[prior(1, address(""))]).is_empty());
}

#[test]
fn transitive_modes_check_every_earlier_version() {
    let v1 = record(r#"{"name":"id","type":"string"}"#);
    let v2 = record(r#"{"name":"id","type":"string"},{"name":"b","type":"int","default":0}"#);
    let v3 = record(r#"{"name":"id","type":"string"},{"name":"b","type":"int"}"#);
    let priors = [prior(2, v2), prior(1, v1)];
    assert!(check_all(Level::Backward, &v3, &priors).is_empty());
    let findings = check_all(Level::BackwardTransitive, &v3, &priors);
    assert_eq!(rules(&findings), [(Rule::MissingDefault, "b")]);
    assert!(findings[0].message.contains("version 1"), "{}", findings[0]);
}

#[test]
fn the_repository_schemas_are_clean() {
    for file in slate::schema::load_dir(std::path::Path::new("schemas/avro")).unwrap() {
        assert!(lint_schema(&file.schema).is_empty(), "{}", file.file_name());
        let itself = [prior(1, file.schema.clone())];
        assert!(check_all(Level::FullTransitive, &file.schema, &itself).is_empty(), "{}", file.file_name());
    }
}

#[test]
fn lint_enum_symbol_added_without_an_earlier_default() {
    let v1 = record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B"]}}"#);
    let v2 = record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B","C"],"default":"A"}}"#);
    let findings = lint_change(&v1, &v2, "version 1");
    assert_eq!(rules(&findings), [(Rule::EnumSymbolWithoutDefault, "s")]);
    assert!(findings[0].message.contains("C") && findings[0].fix.contains("\"default\""), "{}", findings[0]);
    // The registry accepts it under BACKWARD; the check does not.
    assert_eq!(rules(&check_all(Level::Backward, &v2, &[prior(1, v1)])), [(Rule::EnumSymbolWithoutDefault, "s")]);
    // Once the earlier version has a default, adding symbols is safe.
    let v3 = record(r#"{"name":"s","type":{"type":"enum","name":"S","symbols":["A","B","C","D"],"default":"A"}}"#);
    assert!(lint_change(&v2, &v3, "version 2").is_empty());
}

#[test]
fn lint_union_default_must_match_the_first_branch() {
    let schema = record(r#"{"name":"note","type":["null","string"],"default":"none"}"#);
    let findings = lint_schema(&schema);
    assert_eq!(rules(&findings), [(Rule::InvalidUnionDefault, "note")]);
    assert!(findings[0].message.contains("\"none\""), "{}", findings[0]);
    assert!(findings[0].fix.contains("move string first"), "{}", findings[0]);
    let null_second = record(r#"{"name":"note","type":["string","null"],"default":null}"#);
    assert!(lint_schema(&null_second)[0].fix.contains("put \"null\" first"));
    assert!(lint_schema(&record(r#"{"name":"note","type":["null","string"],"default":null}"#)).is_empty());
    assert_eq!(rules(&check_all(Level::None, &schema, &[])), [(Rule::InvalidUnionDefault, "note")], "linted without history too");
}

#[test]
fn lint_field_renamed_without_alias() {
    let v2 = record(r#"{"name":"id","type":"string"},{"name":"name","type":"string","default":""}"#);
    let findings = lint_change(&record(V1), &v2, "version 1");
    assert_eq!(rules(&findings), [(Rule::RenamedFieldWithoutAlias, "name")]);
    assert!(findings[0].fix.contains(r#""aliases": ["title"]"#), "{}", findings[0]);
    // BACKWARD accepts it (the new field has a default); the check does not.
    assert_eq!(rules(&check_all(Level::BackwardTransitive, &v2, &[prior(1, record(V1))])), [(Rule::RenamedFieldWithoutAlias, "name")]);
    let aliased = record(r#"{"name":"id","type":"string"},{"name":"name","type":"string","aliases":["title"]}"#);
    assert!(check_all(Level::BackwardTransitive, &aliased, &[prior(1, record(V1))]).is_empty());
    // A different type at that position is a removal plus an addition, not a rename.
    let other = record(r#"{"name":"id","type":"string"},{"name":"count","type":"long","default":0}"#);
    assert!(lint_change(&record(V1), &other, "version 1").is_empty());
}

#[test]
fn lint_narrowed_numeric_types() {
    let v1 = record(r#"{"name":"n","type":"long"},{"name":"x","type":["null","double"],"default":null}"#);
    let v2 = record(r#"{"name":"n","type":"int"},{"name":"x","type":["null","float"],"default":null}"#);
    let findings = lint_change(&v1, &v2, "version 1");
    assert_eq!(rules(&findings), [(Rule::NarrowedNumeric, "n"), (Rule::NarrowedNumeric, "x")]);
    assert!(findings[0].message.contains("from long to int"), "{}", findings[0]);
    assert!(lint_change(&v2, &v1, "version 1").is_empty(), "widening is fine");
    // FORWARD accepts the narrowing; the lint does not.
    assert_eq!(rules(&check_all(Level::Forward, &v2, &[prior(1, v1)])), [(Rule::NarrowedNumeric, "n"), (Rule::NarrowedNumeric, "x")]);
}

#[test]
fn diff_names_every_kind_of_change() {
    let v1 = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":"int","doc":"A."},
            {"name":"b","type":"string","default":"x"},
            {"name":"gone","type":"string"},
            {"name":"s","type":{"type":"enum","name":"S","symbols":["X","Y"]}},
            {"name":"m","type":{"type":"record","name":"M","fields":[{"name":"t","type":"long"}]}}]}"#,
    )
    .unwrap();
    let v2 = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":"long","doc":"A, wider."},
            {"name":"b","type":"string","default":"y"},
            {"name":"s","type":{"type":"enum","name":"S","symbols":["X","Z"]}},
            {"name":"m","type":{"type":"record","name":"M","fields":[{"name":"t","type":"long"},{"name":"u","type":["null","int"],"default":null}]}},
            {"name":"c","type":["null","string"],"default":null}]}"#,
    )
    .unwrap();
    let lines: Vec<String> = diff(&v1, &v2).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "- gone: removed, was string",
            "~ a: type int → long",
            "~ a: doc \"A.\" → \"A, wider.\"",
            "~ b: default \"x\" → \"y\"",
            "~ s: enum symbols +Z -Y",
            "+ m.u: added, null | int (default null)",
            "+ c: added, null | string (default null)",
        ]
    );
    assert!(diff(&v2, &v2).is_empty());
}

#[test]
fn subjects_follow_the_configured_strategy_like_the_enricher() {
    use slate::config::{Config, SubjectNameStrategy};
    let files = slate::schema::load_dir(std::path::Path::new("schemas/avro")).unwrap();
    let find = |name: &str| files.iter().find(|f| f.file_name() == name).unwrap();
    let (production, event) = (find("Production.avsc"), find("ChangeEvent.avsc"));
    let mut config = Config::default();
    config.enricher.output_topic_prefix = "out.".into();
    assert_eq!(production.subjects(&config), ["out.production.enriched-value"]);
    let inputs = event.subjects(&config);
    assert_eq!(inputs.len(), 6);
    assert!(inputs.contains(&"studio.cash_flow.changes-value".to_owned()), "{inputs:?}");
    config.registry.subject_name_strategy = SubjectNameStrategy::Record;
    assert_eq!(production.subjects(&config), ["studio.finance.Production"]);
    assert_eq!(event.subjects(&config), ["studio.finance.ChangeEvent"], "one subject for all input topics");
    config.registry.subject_name_strategy = SubjectNameStrategy::TopicRecord;
    assert_eq!(production.subjects(&config), ["out.production.enriched-studio.finance.Production"]);
    config.enricher.topics = vec!["cdc.payments".into()];
    assert_eq!(event.subjects(&config), ["cdc.payments-studio.finance.ChangeEvent"]);
}
