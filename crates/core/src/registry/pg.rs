//! PostgreSQL store (sqlx runtime query API). Tables: `migrations/registry/0001_init.sql`,
//! applied idempotently by `connect` under an advisory lock (so several slate processes may
//! start at once). The store's contracts are in `store.rs`.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::compat::CompatibilityLevel;
use super::error::RegistryError;
use super::mode::Mode;
use super::store::{InsertOutcome, StoredSchema, VersionRow};

const SCHEMA_SQL: &str = include_str!("../../../../migrations/registry/0001_init.sql");
const MODE_SQL: &str = include_str!("../../../../migrations/registry/0002_mode.sql");
const CONTEXTS_SQL: &str = include_str!("../../../../migrations/registry/0003_contexts.sql");
/// Arbitrary constant key of the advisory lock that serializes DDL ("slate reg").
const DDL_LOCK_KEY: i64 = 0x736c_6174_6572_6567;

type Result<T> = std::result::Result<T, RegistryError>;

/// Registry storage in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and creates the registry tables if missing.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool and creates the registry tables if missing.
    pub async fn from_pool(pool: PgPool) -> Result<PgStore> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK_KEY).execute(&mut *tx).await?;
        sqlx::raw_sql(SCHEMA_SQL).execute(&mut *tx).await?;
        sqlx::raw_sql(MODE_SQL).execute(&mut *tx).await?;
        sqlx::raw_sql(CONTEXTS_SQL).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(PgStore { pool })
    }

    /// The id of this schema in `context`, allocating the context's next id (max + 1, under the
    /// context's id lock, so concurrent registrations agree and ids are never reused: schema rows
    /// are never deleted).
    pub(super) async fn schema_id(&self, context: &str, text: &str, references_json: &str) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        lock_ids(&mut tx, context).await?;
        if let Some(id) = find_id(&mut *tx, context, text, references_json).await? {
            return Ok(id);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO registry_schemas (context, id, schema_text, references_json) OVERRIDING SYSTEM VALUE \
             SELECT $1, COALESCE(max(id), 0) + 1, $2, $3 FROM registry_schemas WHERE context = $1 RETURNING id",
        )
        .bind(context)
        .bind(text)
        .bind(references_json)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        to_u32(id)
    }

    pub(super) async fn find_schema_id(&self, context: &str, text: &str, references_json: &str) -> Result<Option<u32>> {
        find_id(&self.pool, context, text, references_json).await
    }

    pub(super) async fn schema_by_id(&self, context: &str, id: u32) -> Result<Option<StoredSchema>> {
        let row = sqlx::query("SELECT schema_text, references_json FROM registry_schemas WHERE context = $1 AND id = $2")
            .bind(context)
            .bind(i64::from(id))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredSchema { id, text: row.try_get("schema_text")?, references_json: row.try_get("references_json")? }))
    }

    pub(super) async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT subject FROM registry_subject_versions \
             WHERE $1 OR NOT deleted ORDER BY subject",
        )
        .bind(include_deleted)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("subject")?)).collect()
    }

    pub(super) async fn versions(&self, subject: &str) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(
            "SELECT version, schema_id, deleted FROM registry_subject_versions \
             WHERE subject = $1 ORDER BY version",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    pub(super) async fn usages(&self, context: &str, id: u32) -> Result<Vec<(String, VersionRow)>> {
        // The default context's subjects are the unqualified ones.
        let rows = sqlx::query(
            "SELECT subject, version, schema_id, deleted FROM registry_subject_versions WHERE schema_id = $1 \
             AND (CASE WHEN $2 = '.' THEN NOT starts_with(subject, ':.') ELSE starts_with(subject, ':' || $2 || ':') END) \
             ORDER BY subject, version",
        )
        .bind(i64::from(id))
        .bind(context)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("subject")?, version_row(row)?))).collect()
    }

    pub(super) async fn insert_version(&self, subject: &str, schema_id: u32, checked_max_opt: Option<u32>) -> Result<InsertOutcome> {
        let mut tx = self.pool.begin().await?;
        // Serializes writers of one subject across connections and processes.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(subject).execute(&mut *tx).await?;
        let outcome = insert_locked(&mut tx, subject, schema_id, checked_max_opt).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn soft_delete(&self, subject: &str, versions: &[u32]) -> Result<()> {
        sqlx::query(
            "UPDATE registry_subject_versions SET deleted = TRUE \
             WHERE subject = $1 AND version = ANY($2)",
        )
        .bind(subject)
        .bind(to_i32s(versions))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn hard_delete(&self, subject: &str, versions: &[u32]) -> Result<()> {
        sqlx::query(
            "DELETE FROM registry_subject_versions \
             WHERE subject = $1 AND version = ANY($2) AND deleted",
        )
        .bind(subject)
        .bind(to_i32s(versions))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn config(&self, key: &str) -> Result<Option<CompatibilityLevel>> {
        let row = sqlx::query("SELECT compatibility FROM registry_config WHERE subject = $1").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| parse_level(row.try_get("compatibility")?)).transpose()
    }

    pub(super) async fn set_config(&self, key: &str, level: CompatibilityLevel) -> Result<()> {
        sqlx::query(
            "INSERT INTO registry_config (subject, compatibility) VALUES ($1, $2) \
             ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
        )
        .bind(key)
        .bind(level.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_config(&self, key: &str) -> Result<Option<CompatibilityLevel>> {
        let row = sqlx::query("DELETE FROM registry_config WHERE subject = $1 RETURNING compatibility")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| parse_level(row.try_get("compatibility")?)).transpose()
    }
}

impl PgStore {
    pub(super) async fn schemas_mentioning(&self, subject: &str) -> Result<Vec<(String, StoredSchema)>> {
        let rows =
            sqlx::query("SELECT context, id, schema_text, references_json FROM registry_schemas WHERE strpos(references_json, $1) > 0")
                .bind(subject)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let schema = StoredSchema {
                    id: to_u32(row.try_get::<i64, _>("id")?)?,
                    text: row.try_get("schema_text")?,
                    references_json: row.try_get("references_json")?,
                };
                Ok((row.try_get("context")?, schema))
            })
            .collect()
    }

    pub(super) async fn insert_schema_with_id(&self, context: &str, id: u32, text: &str, references_json: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_ids(&mut tx, context).await?;
        if let Some(held) = sqlx::query("SELECT schema_text, references_json FROM registry_schemas WHERE context = $1 AND id = $2")
            .bind(context)
            .bind(i64::from(id))
            .fetch_optional(&mut *tx)
            .await?
        {
            let same =
                held.try_get::<String, _>("schema_text")? == text && held.try_get::<String, _>("references_json")? == references_json;
            return if same { Ok(()) } else { Err(RegistryError::IdDoesNotMatch(format!("id {id} already holds another schema"))) };
        }
        if let Some(other) = find_id(&mut *tx, context, text, references_json).await? {
            return Err(RegistryError::IdDoesNotMatch(format!("this schema is already stored with id {other}, not {id}")));
        }
        // Allocated ids (max + 1) continue above every imported one.
        sqlx::query(
            "INSERT INTO registry_schemas (context, id, schema_text, references_json) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4)",
        )
        .bind(context)
        .bind(i64::from(id))
        .bind(text)
        .bind(references_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn insert_version_at(&self, subject: &str, version: u32, schema_id: u32) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO registry_subject_versions (subject, version, schema_id) VALUES ($1, $2, $3) \
             ON CONFLICT (subject, version) DO NOTHING",
        )
        .bind(subject)
        .bind(i32::try_from(version).map_err(|_| RegistryError::InvalidVersion(version.to_string()))?)
        .bind(i64::from(schema_id))
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
        let held = self.versions(subject).await?.into_iter().find(|row| row.version == version);
        match held {
            Some(row) if row.schema_id == schema_id => Ok(()),
            Some(row) => Err(RegistryError::IdDoesNotMatch(format!(
                "version {version} of subject {subject:?} already holds schema {}, not {schema_id}",
                row.schema_id
            ))),
            None => Err(RegistryError::Contended(subject.to_owned())),
        }
    }

    pub(super) async fn mode(&self, key: &str) -> Result<Option<Mode>> {
        let row = sqlx::query("SELECT mode FROM registry_mode WHERE subject = $1").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| parse_mode(row.try_get("mode")?)).transpose()
    }

    pub(super) async fn set_mode(&self, key: &str, mode: Mode) -> Result<()> {
        sqlx::query("INSERT INTO registry_mode (subject, mode) VALUES ($1, $2) ON CONFLICT (subject) DO UPDATE SET mode = EXCLUDED.mode")
            .bind(key)
            .bind(mode.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn delete_mode(&self, key: &str) -> Result<Option<Mode>> {
        let row = sqlx::query("DELETE FROM registry_mode WHERE subject = $1 RETURNING mode").bind(key).fetch_optional(&self.pool).await?;
        row.map(|row| parse_mode(row.try_get("mode")?)).transpose()
    }
}

/// Serializes id allocation within one context, across connections and processes.
async fn lock_ids(tx: &mut Transaction<'_, Postgres>, context: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('slate-registry-ids:' || $1))").bind(context).execute(&mut **tx).await?;
    Ok(())
}

async fn find_id(db: impl sqlx::PgExecutor<'_>, context: &str, text: &str, references_json: &str) -> Result<Option<u32>> {
    let row = sqlx::query(
        "SELECT id FROM registry_schemas \
         WHERE context = $1 AND md5(schema_text) = md5($2) AND md5(references_json) = md5($3) \
         AND schema_text = $2 AND references_json = $3",
    )
    .bind(context)
    .bind(text)
    .bind(references_json)
    .fetch_optional(db)
    .await?;
    row.map(|row| to_u32(row.try_get::<i64, _>("id")?)).transpose()
}

fn parse_mode(name: String) -> Result<Mode> {
    name.parse().map_err(|_| RegistryError::Corrupt(format!("unknown mode {name:?} in registry_mode")))
}

async fn insert_locked(
    tx: &mut Transaction<'_, Postgres>,
    subject: &str,
    schema_id: u32,
    checked_max_opt: Option<u32>,
) -> Result<InsertOutcome> {
    let existing = sqlx::query(
        "SELECT version FROM registry_subject_versions \
         WHERE subject = $1 AND schema_id = $2 AND NOT deleted ORDER BY version LIMIT 1",
    )
    .bind(subject)
    .bind(i64::from(schema_id))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = existing {
        return Ok(InsertOutcome::Existing(to_u32(row.try_get::<i32, _>("version")?.into())?));
    }
    let max: Option<i32> = sqlx::query("SELECT max(version) AS max FROM registry_subject_versions WHERE subject = $1")
        .bind(subject)
        .fetch_one(&mut **tx)
        .await?
        .try_get("max")?;
    let max_opt = max.map(|max| to_u32(max.into())).transpose()?;
    if max_opt != checked_max_opt {
        return Ok(InsertOutcome::Conflict);
    }
    let version = max_opt.unwrap_or(0) + 1;
    sqlx::query("INSERT INTO registry_subject_versions (subject, version, schema_id) VALUES ($1, $2, $3)")
        .bind(subject)
        .bind(version as i32)
        .bind(i64::from(schema_id))
        .execute(&mut **tx)
        .await?;
    Ok(InsertOutcome::Inserted(version))
}

fn version_row(row: &sqlx::postgres::PgRow) -> Result<VersionRow> {
    Ok(VersionRow {
        version: to_u32(row.try_get::<i32, _>("version")?.into())?,
        schema_id: to_u32(row.try_get::<i64, _>("schema_id")?)?,
        deleted: row.try_get("deleted")?,
    })
}

fn to_u32(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| RegistryError::Corrupt(format!("id or version {value} out of range")))
}

fn to_i32s(versions: &[u32]) -> Vec<i32> {
    versions.iter().filter_map(|version| i32::try_from(*version).ok()).collect()
}

fn parse_level(name: String) -> Result<CompatibilityLevel> {
    name.parse().map_err(|_| RegistryError::Corrupt(format!("unknown compatibility level {name:?} in registry_config")))
}
