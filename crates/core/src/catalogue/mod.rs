//! The catalogue: which entities this deployment enriches and stores, each with its Avro record.
//!
//! Entities are data. Each is a name plus an Avro record: a file, or the latest version of a
//! registry subject ([`subjects`]). Config declares them (`[catalogue.entities.<name>]`) and nothing in the enricher, the sinks, replay or verify
//! knows any particular entity. Everything a stage derives from a record (GraphQL selection,
//! search mapping, SQL table plan, reader schema) is derived from the [`Entity`] built here,
//! once, at start. With no entities declared, the catalogue is the built-in example (the
//! studio's six records from `schemas/avro/`, embedded so the demo needs no files).
//!
//! Contract for every entity record, checked at build: a record with a `string` field `id` (the
//! Kafka key and the id at the source), a `long` field `version` (monotonic per id at the
//! source; every sink's idempotency guard) and a record field `_meta` (the enricher's
//! provenance; copy it from `schemas/avro/Production.avsc`).

pub mod example;
mod name;
pub mod subjects;

pub use name::{EntityName, UnknownEntity};
pub use subjects::Subjects;

use apache_avro::Schema;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// Longest entity name: it becomes part of topic, table and index names.
pub const MAX_NAME_LEN: usize = 48;

/// One declared entity: its name and its Avro record, parsed once.
#[derive(Debug)]
pub struct Entity {
    pub name: EntityName,
    /// The record's full name, e.g. `studio.finance.Production` (the registry's record name).
    pub record: String,
    pub schema: Schema,
    /// The schema JSON as written (what the enricher registers).
    pub text: String,
    /// Where the schema came from: a file path, a registry subject version, or `built-in`.
    pub origin: String,
}

/// How config declares one entity.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntitySpec {
    /// The record file, relative to the schemas directory (or absolute). Default:
    /// `<PascalCaseName>.avsc`, e.g. `PurchaseOrder.avsc` for `purchase_order`.
    pub schema: Option<PathBuf>,
    /// Instead of a file: the registry subject whose latest version (at start) is the record.
    pub subject: Option<String>,
    /// Other spellings events and CDC records may use for the entity (besides the name, its
    /// plural and the record name).
    pub aliases: Vec<String>,
}

/// Why a catalogue cannot be built; the message names the entity, the file and the fix.
#[derive(Debug, thiserror::Error)]
#[error("entity `{entity}` ({file}): {message}")]
pub struct CatalogueError {
    pub entity: String,
    pub file: String,
    pub message: String,
}

/// The entities of a deployment: declared ones sorted by name, the built-in ones in the
/// studio's order.
#[derive(Debug)]
pub struct Catalogue {
    entities: Vec<Entity>,
}

/// The built-in example catalogue (JSON texts of `schemas/avro/`, embedded).
const EXAMPLE: &[(&str, &str)] = &[
    ("production", include_str!("../../../../schemas/avro/Production.avsc")),
    ("talent", include_str!("../../../../schemas/avro/Talent.avsc")),
    ("schedule", include_str!("../../../../schemas/avro/Schedule.avsc")),
    ("budget", include_str!("../../../../schemas/avro/Budget.avsc")),
    ("cash_flow", include_str!("../../../../schemas/avro/CashFlow.avsc")),
    ("payment", include_str!("../../../../schemas/avro/Payment.avsc")),
];

static BUILT_IN: LazyLock<Arc<Catalogue>> = LazyLock::new(|| {
    let entities = EXAMPLE
        .iter()
        .map(|(name, text)| entity(name, text.to_string(), "built-in".into(), &[]).expect("the built-in catalogue is valid (tested)"))
        .collect();
    Arc::new(Catalogue { entities })
});

/// Registers the built-in names (its build interns, it never looks up: no cycle).
fn register_built_in() {
    LazyLock::force(&BUILT_IN);
}

impl Catalogue {
    /// The built-in example catalogue, shared.
    pub fn built_in() -> Arc<Catalogue> {
        BUILT_IN.clone()
    }

    /// An entity of the built-in example catalogue (the demo, the bench and tests use them).
    pub fn example(name: EntityName) -> &'static Entity {
        let catalogue: &'static Catalogue = &BUILT_IN;
        catalogue.get(name).unwrap_or_else(|| panic!("{name} is not an entity of the built-in catalogue"))
    }

    /// Reads and checks every declared entity's record: from its file under `dir`, or from
    /// `subjects` for an entry that names a registry subject. Duplicate names cannot happen
    /// (config keys are unique); two entities sharing one record are refused, since the record
    /// name decides the registry subject.
    pub fn load(dir: &Path, specs: &BTreeMap<String, EntitySpec>, subjects: &Subjects) -> Result<Catalogue, CatalogueError> {
        let mut entities: Vec<Entity> = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let (text, origin) = match (&spec.subject, &spec.schema) {
                (Some(subject), Some(file)) => {
                    return Err(CatalogueError {
                        entity: name.clone(),
                        file: file.display().to_string(),
                        message: format!("both `schema` and `subject = {subject:?}` are set; keep one (the file, or the registry subject)"),
                    });
                }
                (Some(subject), None) => match subjects.get(name) {
                    Some(fetched) => (fetched.text.clone(), fetched.origin.clone()),
                    None if subjects.ignores_unfetched() => continue,
                    None => {
                        return Err(CatalogueError {
                            entity: name.clone(),
                            file: format!("registry subject {subject}"),
                            message: "the subject was not read from the registry; load the config with                                       `catalogue::subjects::fetch` first (every `slate` command does)"
                                .into(),
                        });
                    }
                },
                (None, file) => {
                    let file = file.clone().unwrap_or_else(|| PathBuf::from(format!("{}.avsc", pascal_case(name))));
                    let path = if file.is_absolute() { file } else { dir.join(file) };
                    let origin = path.display().to_string();
                    let text = std::fs::read_to_string(&path).map_err(|e| CatalogueError {
                        entity: name.clone(),
                        file: origin.clone(),
                        message: format!(
                            "cannot read the schema file: {e}; set catalogue.entities.{name}.schema (or .subject) or catalogue.schemas_dir"
                        ),
                    })?;
                    (text, origin)
                }
            };
            let e = entity(name, text, origin.clone(), &spec.aliases)?;
            if let Some(other) = entities.iter().find(|o| o.record == e.record) {
                return Err(CatalogueError {
                    entity: name.clone(),
                    file: origin,
                    message: format!(
                        "record {} is already the record of entity `{}`; give each entity its own record",
                        e.record, other.name
                    ),
                });
            }
            entities.push(e);
        }
        Ok(Catalogue { entities })
    }

    pub fn get(&self, name: EntityName) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// The entity whose record has this full name.
    pub fn by_record(&self, full_name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.record == full_name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entity> {
        self.entities.iter()
    }

    pub fn names(&self) -> Vec<EntityName> {
        self.entities.iter().map(|e| e.name).collect()
    }

    pub fn contains(&self, name: EntityName) -> bool {
        self.get(name).is_some()
    }
}

fn entity(name: &str, text: String, origin: String, aliases: &[String]) -> Result<Entity, CatalogueError> {
    let fail = |message: String| CatalogueError { entity: name.to_string(), file: origin.clone(), message };
    let valid_name = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(fail(format!(
            "the name must be 1..={MAX_NAME_LEN} characters of a-z, 0-9 and _, starting with a letter (it becomes topic, table and index names)"
        )));
    }
    let schema = Schema::parse_str(&text).map_err(|e| fail(format!("not a valid Avro schema: {e}")))?;
    let Schema::Record(record) = &schema else { return Err(fail("the schema must be an Avro record".into())) };
    let field = |n: &str| record.fields.iter().find(|f| f.name == n).map(|f| &f.schema);
    match field("id") {
        Some(Schema::String | Schema::Uuid(_)) => {}
        _ => return Err(fail("the record needs a field `id` of type string (the Kafka key and the id at the source)".into())),
    }
    match field("version") {
        Some(Schema::Long) => {}
        _ => return Err(fail("the record needs a field `version` of type long (the source's version, which sinks guard on)".into())),
    }
    match field("_meta") {
        Some(Schema::Record(_) | Schema::Ref { .. }) => {}
        _ => {
            return Err(fail(
                "the record needs the field `_meta` (the enricher's provenance); copy it from schemas/avro/Production.avsc".into(),
            ));
        }
    }
    let record_name = record.name.fullname(None);
    let local = record.name.name().to_string();
    Ok(Entity { name: EntityName::intern(name, &local, aliases), record: record_name, schema, text, origin })
}

/// `purchase_order` → `PurchaseOrder`.
pub fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests;
