//! Registry semantics on top of a `Store`: registration with compatibility checks, lookups,
//! version selection and soft/permanent deletes; levels and modes are in `settings.rs`, HTTP in
//! `server.rs`. Every subject argument is parsed and made canonical first (`context.rs`): its
//! context picks the id space of every schema id it stores or reads.

use std::collections::HashSet;
use std::str::FromStr;

use apache_avro::Schema;

use super::SchemaReference;
use super::compat::{self, CompatibilityLevel};
use super::context::{self, Qualified, context_of};
use super::error::RegistryError;
use super::mode::Mode;
use super::schema;
use super::store::{InsertOutcome, Store, StoredSchema, VersionRow};

type Result<T> = std::result::Result<T, RegistryError>;

/// Registration retries when another registration of the same subject won the race.
const MAX_REGISTER_ATTEMPTS: usize = 8;

/// `latest` (or `-1`, as Confluent) or an explicit version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u32),
}

impl FromStr for VersionSelector {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" || s == "-1" {
            return Ok(Self::Latest);
        }
        match s.parse::<u32>() {
            Ok(number) if number > 0 => Ok(Self::Number(number)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

/// A subject version as returned by the API.
#[derive(Debug, Clone)]
pub struct VersionView {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// A schema submitted for registration, lookup or a compatibility check, validated.
struct Candidate {
    text: String,
    references_json: String,
    avro: Schema,
}

pub struct Registry {
    pub(super) store: Store,
    pub(super) default_level: CompatibilityLevel,
}

/// `subject` made canonical; a context alone (`:.ctx:`) is not a subject.
fn canonical(subject: &str) -> Result<String> {
    let q = Qualified::parse(subject)?;
    if q.name.is_empty() {
        return Err(RegistryError::InvalidSubject(format!(
            "{subject:?}: names the context {}, not a subject; append the subject's name",
            q.context
        )));
    }
    Ok(q.subject())
}

impl Registry {
    pub fn new(store: Store, default_level: CompatibilityLevel) -> Self {
        Registry { store, default_level }
    }

    /// Registers `text` under `subject`; returns the global id (existing or new). `explicit`
    /// (id, version) is only accepted in IMPORT mode, where it is stored as given, unchecked.
    pub async fn register(&self, subject: &str, text: &str, refs: Vec<SchemaReference>, explicit: Explicit) -> Result<u32> {
        let subject = &canonical(subject)?;
        let ctx = context_of(subject);
        let mode = self.mode(Some(subject), true).await?;
        match (mode, explicit.id) {
            (Mode::ReadOnly, _) => return Err(read_only(subject)),
            (Mode::Import, _) => return self.import(subject, text, refs, explicit).await,
            (Mode::ReadWrite, Some(id)) => {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "subject {subject:?} is not in IMPORT mode: a registration may not choose its id ({id}); set the mode to IMPORT first"
                )));
            }
            (Mode::ReadWrite, None) => {}
        }
        let candidate = self.prepare(ctx, text, refs).await?;
        for _ in 0..MAX_REGISTER_ATTEMPTS {
            let rows = self.store.versions(subject).await?;
            let known_id = self.store.find_schema_id(ctx, &candidate.text, &candidate.references_json).await?;
            if let Some(id) = known_id
                && rows.iter().any(|row| row.schema_id == id && !row.deleted)
            {
                return Ok(id);
            }
            let level = self.level(Some(subject), true).await?;
            let live: Vec<VersionRow> = rows.iter().rev().filter(|row| !row.deleted).copied().collect();
            let messages = self.check(ctx, level, &candidate, &live).await?;
            if !messages.is_empty() {
                return Err(RegistryError::Incompatible { subject: subject.to_owned(), messages });
            }
            let id = self.store.schema_id(ctx, &candidate.text, &candidate.references_json).await?;
            let checked_max_opt = rows.last().map(|row| row.version);
            match self.store.insert_version(subject, id, checked_max_opt).await? {
                InsertOutcome::Inserted(_) | InsertOutcome::Existing(_) => return Ok(id),
                InsertOutcome::Conflict => continue,
            }
        }
        Err(RegistryError::Contended(subject.to_owned()))
    }

    /// IMPORT mode: the schema keeps the given id (or gets a new one) and the given version (or
    /// the next one); no compatibility check, as the schemas come from a registry that did it.
    async fn import(&self, subject: &str, text: &str, refs: Vec<SchemaReference>, explicit: Explicit) -> Result<u32> {
        let ctx = context_of(subject);
        let candidate = self.prepare(ctx, text, refs).await?;
        let id = match explicit.id {
            Some(id) => {
                self.store.insert_schema_with_id(ctx, id, &candidate.text, &candidate.references_json).await?;
                id
            }
            None => self.store.schema_id(ctx, &candidate.text, &candidate.references_json).await?,
        };
        let rows = self.store.versions(subject).await?;
        let version = match explicit.version {
            Some(v) => v,
            None => match rows.iter().find(|row| row.schema_id == id && !row.deleted) {
                Some(row) => return Ok(row.schema_id),
                None => rows.last().map_or(0, |row| row.version) + 1,
            },
        };
        self.store.insert_version_at(subject, version, id).await?;
        Ok(id)
    }

    /// Ids of the schemas, used by a live version, whose references name `subject` at the
    /// selected version.
    pub async fn referenced_by(&self, subject: &str, selector: VersionSelector) -> Result<Vec<u32>> {
        let subject = &canonical(subject)?;
        let rows = self.visible_rows(subject, true).await?;
        let version = select(subject, &rows, selector)?.version;
        self.referrers(subject, version).await
    }

    /// Ids of the live schemas naming `subject` (canonical) at `version`, in any context (ids of
    /// another context than the subject's are theirs).
    async fn referrers(&self, subject: &str, version: u32) -> Result<Vec<u32>> {
        let name = Qualified::parse(subject)?.name;
        let mut ids = Vec::new();
        for (ctx, stored) in self.store.schemas_mentioning(&name).await? {
            let mut names_it = false;
            for r in parse_refs(&stored.references_json)?.iter().filter(|r| r.version == version) {
                names_it |= context::resolve_reference(&ctx, &r.subject)? == subject;
            }
            if names_it && self.store.usages(&ctx, stored.id).await?.iter().any(|(_, row)| !row.deleted) {
                ids.push(stored.id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// A referenced version cannot be deleted (42206), as Confluent.
    async fn refuse_if_referenced(&self, subject: &str, versions: &[u32]) -> Result<()> {
        for version in versions {
            if !self.referrers(subject, *version).await?.is_empty() {
                return Err(RegistryError::ReferenceExists { subject: subject.to_owned(), version: *version });
            }
        }
        Ok(())
    }

    /// Compatibility messages of `text` against one version, or (selector `None`) against the
    /// live versions the subject's level names. Empty means compatible.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        selector_opt: Option<VersionSelector>,
        text: &str,
        refs: Vec<SchemaReference>,
    ) -> Result<Vec<String>> {
        let subject = &canonical(subject)?;
        let ctx = context_of(subject);
        let candidate = self.prepare(ctx, text, refs).await?;
        let level = self.level(Some(subject), true).await?;
        let rows = self.store.versions(subject).await?;
        let live: Vec<VersionRow> = rows.iter().rev().filter(|row| !row.deleted).copied().collect();
        let Some(selector) = selector_opt else {
            return self.check(ctx, level, &candidate, &live).await;
        };
        // As Confluent 6.1+: anything is compatible with the latest of nothing.
        if live.is_empty() && selector == VersionSelector::Latest {
            return Ok(Vec::new());
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let row = select(subject, &live, selector)?;
        self.check(ctx, level, &candidate, &[row]).await
    }

    /// The live (or, with `include_deleted`, any) version of `subject` holding this schema.
    pub async fn lookup(&self, subject: &str, text: &str, refs: Vec<SchemaReference>, include_deleted: bool) -> Result<VersionView> {
        let subject = &canonical(subject)?;
        let ctx = context_of(subject);
        let rows = self.visible_rows(subject, include_deleted).await?;
        let candidate = self.prepare(ctx, text, refs).await?;
        let known_id = self.store.find_schema_id(ctx, &candidate.text, &candidate.references_json).await?;
        let row = known_id
            .and_then(|id| rows.iter().rev().find(|row| row.schema_id == id))
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("in subject {subject:?}")))?;
        self.view(subject, *row).await
    }

    /// Schema `id` of context `ctx` and its references.
    pub async fn schema(&self, ctx: &str, id: u32) -> Result<(StoredSchema, Vec<SchemaReference>)> {
        let stored = self.load(ctx, id).await?;
        let refs = parse_refs(&stored.references_json)?;
        Ok((stored, refs))
    }

    /// (subject, version) pairs of context `ctx` using its schema `id`.
    pub async fn schema_versions(&self, ctx: &str, id: u32, include_deleted: bool) -> Result<Vec<(String, u32)>> {
        self.load(ctx, id).await?;
        let usages = self.store.usages(ctx, id).await?;
        Ok(usages.into_iter().filter(|(_, row)| include_deleted || !row.deleted).map(|(subject, row)| (subject, row.version)).collect())
    }

    /// Subjects of every context, canonical (qualified outside the default context).
    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>> {
        self.store.subjects(include_deleted).await
    }

    /// The contexts holding subjects (soft-deleted included), and always the default one.
    pub async fn contexts(&self) -> Result<Vec<String>> {
        let mut contexts: Vec<String> = self.store.subjects(true).await?.iter().map(|s| context_of(s).to_owned()).collect();
        contexts.push(context::DEFAULT.to_owned());
        contexts.sort_unstable();
        contexts.dedup();
        Ok(contexts)
    }

    pub async fn versions(&self, subject: &str, include_deleted: bool) -> Result<Vec<u32>> {
        let rows = self.visible_rows(&canonical(subject)?, include_deleted).await?;
        Ok(rows.iter().map(|row| row.version).collect())
    }

    pub async fn version(&self, subject: &str, selector: VersionSelector, include_deleted: bool) -> Result<VersionView> {
        let subject = &canonical(subject)?;
        let rows = self.visible_rows(subject, include_deleted).await?;
        let row = select(subject, &rows, selector)?;
        self.view(subject, row).await
    }

    /// Soft-deletes every live version, or (permanent) removes a soft-deleted subject.
    /// Returns the affected versions.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        let subject = &canonical(subject)?;
        self.refuse_if_read_only(subject).await?;
        let rows = self.store.versions(subject).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        self.refuse_if_referenced(subject, &rows.iter().map(|row| row.version).collect::<Vec<_>>()).await?;
        let live: Vec<u32> = rows.iter().filter(|row| !row.deleted).map(|row| row.version).collect();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            let all: Vec<u32> = rows.iter().map(|row| row.version).collect();
            self.store.hard_delete(subject, &all).await?;
            return Ok(all);
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
        }
        self.store.soft_delete(subject, &live).await?;
        Ok(live)
    }

    /// Soft-deletes one live version, or (permanent) removes a soft-deleted one.
    pub async fn delete_version(&self, subject: &str, selector: VersionSelector, permanent: bool) -> Result<u32> {
        let subject = &canonical(subject)?;
        self.refuse_if_read_only(subject).await?;
        let rows = self.store.versions(subject).await?;
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let row = if permanent {
            select(subject, &rows, selector)?
        } else {
            let live: Vec<VersionRow> = rows.iter().filter(|row| !row.deleted).copied().collect();
            match selector {
                VersionSelector::Latest => select(subject, &live, selector)?,
                VersionSelector::Number(_) => select(subject, &rows, selector)?,
            }
        };
        let version = row.version;
        self.refuse_if_referenced(subject, &[version]).await?;
        match (permanent, row.deleted) {
            (true, false) => Err(RegistryError::VersionNotSoftDeleted { subject: subject.to_owned(), version }),
            (false, true) => Err(RegistryError::VersionSoftDeleted { subject: subject.to_owned(), version }),
            (true, true) => {
                self.store.hard_delete(subject, &[version]).await?;
                Ok(version)
            }
            (false, false) => {
                self.store.soft_delete(subject, &[version]).await?;
                Ok(version)
            }
        }
    }

    async fn visible_rows(&self, subject: &str, include_deleted: bool) -> Result<Vec<VersionRow>> {
        let rows: Vec<VersionRow> = self.store.versions(subject).await?.into_iter().filter(|row| include_deleted || !row.deleted).collect();
        if rows.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(rows)
    }

    async fn view(&self, subject: &str, row: VersionRow) -> Result<VersionView> {
        let (stored, references) = self.schema(context_of(subject), row.schema_id).await?;
        Ok(VersionView { subject: subject.to_owned(), version: row.version, id: row.schema_id, schema: stored.text, references })
    }

    async fn load(&self, ctx: &str, id: u32) -> Result<StoredSchema> {
        let not_found =
            || RegistryError::SchemaNotFound(if ctx == context::DEFAULT { id.to_string() } else { format!("{id} in context {ctx}") });
        self.store.schema_by_id(ctx, id).await?.ok_or_else(not_found)
    }

    /// Validates a schema submitted in context `ctx` (its references resolve there).
    async fn prepare(&self, ctx: &str, text: &str, refs: Vec<SchemaReference>) -> Result<Candidate> {
        let normalized = schema::normalize(text)?;
        let dependencies = self.resolve(ctx, &refs).await?;
        let avro = schema::parse(&normalized, &dependencies)?;
        let references_json =
            serde_json::to_string(&refs).map_err(|err| RegistryError::BadRequest(format!("unserializable references: {err}")))?;
        Ok(Candidate { text: normalized, references_json, avro })
    }

    /// The texts of every schema reachable through `refs` (written in context `ctx`), each once.
    async fn resolve(&self, ctx: &str, refs: &[SchemaReference]) -> Result<Vec<String>> {
        let mut pending: Vec<(String, SchemaReference)> = refs.iter().map(|r| (ctx.to_owned(), r.clone())).collect();
        let mut seen_ids = HashSet::new();
        let mut texts = Vec::new();
        while let Some((referrer_ctx, reference)) = pending.pop() {
            let subject = context::resolve_reference(&referrer_ctx, &reference.subject)?;
            let target_ctx = context_of(&subject).to_owned();
            let rows = self.store.versions(&subject).await?;
            let row = rows.iter().find(|row| row.version == reference.version).ok_or_else(|| {
                RegistryError::InvalidSchema(format!(
                    "reference {:?} to subject {:?} version {} not found",
                    reference.name, reference.subject, reference.version
                ))
            })?;
            if !seen_ids.insert((target_ctx.clone(), row.schema_id)) {
                continue;
            }
            let stored = self.load(&target_ctx, row.schema_id).await?;
            pending.extend(parse_refs(&stored.references_json)?.into_iter().map(|r| (target_ctx.clone(), r)));
            texts.push(stored.text);
        }
        Ok(texts)
    }

    async fn check(&self, ctx: &str, level: CompatibilityLevel, candidate: &Candidate, rows: &[VersionRow]) -> Result<Vec<String>> {
        if level == CompatibilityLevel::None || rows.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = if level.is_transitive() { rows } else { &rows[..1] };
        let mut existing = Vec::with_capacity(wanted.len());
        for row in wanted {
            let (stored, refs) = self.schema(ctx, row.schema_id).await?;
            let dependencies = self.resolve(ctx, &refs).await?;
            let avro = schema::parse(&stored.text, &dependencies)
                .map_err(|err| RegistryError::Corrupt(format!("stored schema {} does not parse: {err}", row.schema_id)))?;
            existing.push((row.version, avro));
        }
        Ok(compat::check(level, &candidate.avro, &existing))
    }
}

/// An id and version a registration brings along (IMPORT mode).
#[derive(Debug, Clone, Copy, Default)]
pub struct Explicit {
    pub id: Option<u32>,
    pub version: Option<u32>,
}

pub(super) fn read_only(subject: &str) -> RegistryError {
    RegistryError::OperationNotPermitted(format!("subject {subject:?} is in read-only mode"))
}

/// The row `selector` names among `rows` (ascending); `Latest` is the last one.
fn select(subject: &str, rows: &[VersionRow], selector: VersionSelector) -> Result<VersionRow> {
    let found = match selector {
        VersionSelector::Latest => rows.iter().max_by_key(|row| row.version),
        VersionSelector::Number(number) => rows.iter().find(|row| row.version == number),
    };
    found.copied().ok_or_else(|| RegistryError::VersionNotFound {
        subject: subject.to_owned(),
        version: match selector {
            VersionSelector::Latest => "latest".to_owned(),
            VersionSelector::Number(number) => number.to_string(),
        },
    })
}

fn parse_refs(references_json: &str) -> Result<Vec<SchemaReference>> {
    serde_json::from_str(references_json).map_err(|err| RegistryError::Corrupt(format!("stored references {references_json:?}: {err}")))
}
