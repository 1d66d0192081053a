//! The live table plans of a SQL sink, and the DDL that keeps the database in step with them:
//! tables created from the catalogue's records at connect, columns and child tables added when a
//! batch brings a writer schema with new fields (before any of its rows is written).
//!
//! Contract: DDL only ever adds (`CREATE TABLE IF NOT EXISTS`, `ADD COLUMN`, nullable), runs in
//! one transaction under the sink's DDL lock (PostgreSQL advisory lock, SQLite `BEGIN
//! IMMEDIATE`), and is idempotent, so several sink processes may evolve at once. A change the
//! tables cannot follow (a field whose type changed, in the plan or in the database) *halts that
//! entity*: nothing of it is altered or written from then on, the reason names the field and the
//! fix, and the other entities go on. A halt lasts until the process restarts (after the fix).

#[cfg(test)]
use super::plan::quote;
use super::plan::{Col, Column, Table};
use crate::catalogue::{Catalogue, EntityName};
use crate::sink::{SinkError, SinkRecord};
use apache_avro::Schema;
use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// The table plan of each entity, as of a batch.
pub(super) type Plans = HashMap<EntityName, Arc<Table>>;
/// Halted entities with the reason.
pub(super) type Halted = BTreeMap<EntityName, String>;

/// The plan of every entity, grown as writer schemas arrive.
pub(super) struct Tables {
    plans: RwLock<Plans>,
    /// Writer schemas already planned (by address: codecs leak their writer, so it is stable).
    seen: Mutex<HashSet<usize>>,
    halted: Mutex<Halted>,
}

/// Plans grown by a batch, to be applied to the database and then installed.
pub(super) struct Growth {
    pub tables: Vec<Arc<Table>>,
    writers: Vec<usize>,
    /// Entities whose newer writer schema the plan cannot follow.
    conflicts: Vec<(EntityName, String)>,
}

impl Tables {
    /// The plans of the catalogue's records.
    pub fn of(catalogue: &Catalogue) -> Result<Tables, SinkError> {
        let mut plans = HashMap::new();
        for e in catalogue.iter() {
            let t = Table::of(e.name, &e.schema).map_err(|e| SinkError::Fatal(e.to_string()))?;
            plans.insert(e.name, Arc::new(t));
        }
        Ok(Tables { plans: RwLock::new(plans), seen: Mutex::new(HashSet::new()), halted: Mutex::new(BTreeMap::new()) })
    }

    pub fn snapshot(&self) -> Plans {
        self.plans.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn all(&self) -> Vec<Arc<Table>> {
        let mut all: Vec<Arc<Table>> = self.snapshot().into_values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn halted(&self) -> Halted {
        self.halted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops writing `entity` (logged once, with the reason).
    pub fn halt(&self, entity: EntityName, reason: String) {
        let mut halted = self.halted.lock().unwrap_or_else(|e| e.into_inner());
        halted.entry(entity).or_insert_with(|| {
            tracing::error!(%entity, %reason, "SQL sink halted this entity; the others go on");
            reason
        });
    }

    /// Brings the tables in step with the writer schemas of `batch`: grows the plans, runs their
    /// DDL through `apply` (which answers the entities whose tables conflict with the database)
    /// and installs what was applied. Returns the plans and the halted entities to write the
    /// batch with.
    pub async fn evolve(
        &self,
        batch: &[SinkRecord],
        apply: impl AsyncFnOnce(&[Arc<Table>]) -> Result<Vec<(EntityName, String)>, SinkError>,
    ) -> Result<(Plans, Halted), SinkError> {
        let mut growth = self.grow(batch);
        if !growth.tables.is_empty() {
            let conflicts = apply(&growth.tables).await?;
            growth.conflicts.extend(conflicts);
        }
        for (entity, reason) in std::mem::take(&mut growth.conflicts) {
            self.halt(entity, reason);
        }
        self.install(growth);
        Ok((self.snapshot(), self.halted()))
    }

    /// What the writer schemas of `batch` not planned yet add to the plans.
    fn grow(&self, batch: &[SinkRecord]) -> Growth {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let halted = self.halted();
        let mut current = self.snapshot();
        let mut growth = Growth { tables: Vec::new(), writers: Vec::new(), conflicts: Vec::new() };
        let mut grown: HashSet<EntityName> = HashSet::new();
        for r in batch {
            let Some(writer) = r.writer else { continue };
            let key = writer as *const Schema as usize;
            if seen.contains(&key) || growth.writers.contains(&key) || halted.contains_key(&r.entity) {
                continue;
            }
            growth.writers.push(key);
            let Some(table) = current.get(&r.entity).cloned() else { continue };
            match Table::of(r.entity, writer).and_then(|newer| table.additions(&newer)) {
                Ok(additions) if additions.is_empty() => {}
                Ok(additions) => {
                    current.insert(r.entity, Arc::new(table.extended(&additions)));
                    grown.insert(r.entity);
                }
                Err(e) => {
                    grown.remove(&r.entity);
                    growth.conflicts.push((r.entity, format!("{e}; restart the sink once the schema or the table is fixed")));
                }
            }
        }
        let conflicting: HashSet<EntityName> = growth.conflicts.iter().map(|(e, _)| *e).collect();
        growth.tables = grown.into_iter().filter(|e| !conflicting.contains(e)).map(|e| current[&e].clone()).collect();
        growth
    }

    /// Installs plans once their DDL is committed (not those of halted entities).
    fn install(&self, growth: Growth) {
        let halted = self.halted();
        let mut plans = self.plans.write().unwrap_or_else(|e| e.into_inner());
        for t in growth.tables.into_iter().filter(|t| !halted.contains_key(&t.entity)) {
            plans.insert(t.entity, t);
        }
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).extend(growth.writers);
    }
}

fn conflict(t: &Table, table: &str, field: &str, held: &str, wanted: &str) -> String {
    format!(
        "SQL sink, entity `{}`, field `{field}`: column {table}.{field} is {held} in the database but the schema makes it \
         {wanted}; migrate the column by hand (or rename the field) and restart the sink: nothing of `{}` is committed until then",
        t.entity, t.entity
    )
}

/// How one backend spells the DDL of a table plan.
struct Dialect {
    /// The system columns of an entity table.
    system: &'static str,
    /// After the closing parenthesis of `CREATE TABLE`.
    suffix: &'static str,
    /// (DDL type, the type as the catalogue reports it) of a column.
    types: fn(Col) -> (&'static str, &'static str),
    add_column: &'static str,
}

const PG: Dialect = Dialect {
    system: "id TEXT PRIMARY KEY, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE, \
             event_ts TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    suffix: "",
    types: Col::pg_type,
    add_column: "ADD COLUMN IF NOT EXISTS",
};

const SQLITE: Dialect = Dialect {
    system: "id TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)), \
             event_ts TEXT, updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    suffix: " STRICT",
    types: |c| (c.sqlite_type(), c.sqlite_type()),
    add_column: "ADD COLUMN",
};

/// `CREATE TABLE IF NOT EXISTS` of the entity table and its child tables, in that order.
fn creates(t: &Table, d: &Dialect) -> Vec<String> {
    let cols = |columns: &[Column]| -> String { columns.iter().map(|c| format!(", {} {}", c.ident, (d.types)(c.col).0)).collect() };
    let mut out = vec![format!("CREATE TABLE IF NOT EXISTS {} ({}{}){}", t.name, d.system, cols(&t.columns), d.suffix)];
    for child in &t.children {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {table} ({parent} TEXT NOT NULL REFERENCES {root} (id) ON DELETE CASCADE, \
             ordinal INTEGER NOT NULL{cols}, PRIMARY KEY ({parent}, ordinal)){suffix}",
            table = child.table,
            parent = child.parent_key,
            root = t.name,
            cols = cols(&child.columns),
            suffix = d.suffix,
        ));
    }
    out
}

/// Every table of `t` (quoted name) with its business columns.
fn tables(t: &Table) -> Vec<(&str, &[Column])> {
    let mut out = vec![(t.name.as_str(), t.columns.as_slice())];
    out.extend(t.children.iter().map(|c| (c.table.as_str(), c.columns.as_slice())));
    out
}

/// The `ALTER TABLE` adding each column of `columns` that `held` (column → type, as the database
/// reports them) lacks; a column held with another type is a conflict.
fn alters<'c>(
    t: &Table,
    table: &str,
    columns: &'c [Column],
    held: &HashMap<String, String>,
    d: &Dialect,
) -> Result<Vec<(String, &'c Column)>, String> {
    let mut out = Vec::new();
    for c in columns {
        let (ddl_type, reported) = (d.types)(c.col);
        match held.get(&c.field) {
            Some(h) if h == reported => {}
            Some(h) => return Err(conflict(t, table, &c.field, h, ddl_type)),
            None => out.push((format!("ALTER TABLE {table} {} {} {ddl_type}", d.add_column, c.ident), c)),
        }
    }
    Ok(out)
}

/// Names the entity in a DDL error, keeping the backend's classification: a connection lost
/// mid-DDL (the database restarting, a network cut) stays [`SinkError::Unavailable`], so a sink
/// starting or evolving its tables during an outage waits it out instead of exiting.
fn ddl_failed(entity: EntityName, classify: fn(sqlx::Error) -> SinkError) -> impl Fn(sqlx::Error) -> SinkError {
    move |e| classify(e).context(format_args!("SQL sink, entity `{entity}`: DDL failed"))
}

/// The DDL of one table plan: `Ok(Err(reason))` when its tables conflict with the database (then
/// nothing of it was altered).
pub(super) type Applied = Result<Result<(), String>, SinkError>;

/// Creates and evolves `t`'s tables on PostgreSQL (the caller holds the DDL lock in `conn`'s
/// transaction).
pub(super) async fn apply_pg(conn: &mut PgConnection, t: &Table) -> Applied {
    let fatal = ddl_failed(t.entity, super::classify);
    for create in creates(t, &PG) {
        sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut *conn).await.map_err(&fatal)?;
    }
    let mut planned = Vec::new();
    for (table, columns) in tables(t) {
        let held: HashMap<String, String> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(unquote(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(&fatal)?
        .into_iter()
        .collect();
        match alters(t, table, columns, &held, &PG) {
            Ok(a) => planned.extend(a.into_iter().map(|(alter, c)| (table, alter, c))),
            Err(conflict) => return Ok(Err(conflict)),
        }
    }
    for (table, alter, c) in planned {
        sqlx::raw_sql(AssertSqlSafe(alter)).execute(&mut *conn).await.map_err(&fatal)?;
        tracing::info!(entity = %t.entity, %table, column = %c.field, "sql sink added a column");
    }
    Ok(Ok(()))
}

/// Creates and evolves `t`'s tables on SQLite (the caller holds `BEGIN IMMEDIATE`); `classify`
/// is SQLite's error classification.
pub(super) async fn apply_sqlite(conn: &mut SqliteConnection, t: &Table, classify: fn(sqlx::Error) -> SinkError) -> Applied {
    let fatal = ddl_failed(t.entity, classify);
    for create in creates(t, &SQLITE) {
        sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut *conn).await.map_err(&fatal)?;
    }
    let mut planned = Vec::new();
    for (table, columns) in tables(t) {
        let held: HashMap<String, String> = sqlx::query_as("SELECT name, upper(type) FROM pragma_table_info(?1)")
            .bind(unquote(table))
            .fetch_all(&mut *conn)
            .await
            .map_err(&fatal)?
            .into_iter()
            .collect();
        match alters(t, table, columns, &held, &SQLITE) {
            Ok(a) => planned.extend(a.into_iter().map(|(alter, c)| (table, alter, c))),
            Err(conflict) => return Ok(Err(conflict)),
        }
    }
    for (table, alter, c) in planned {
        sqlx::raw_sql(AssertSqlSafe(alter)).execute(&mut *conn).await.map_err(&fatal)?;
        tracing::info!(entity = %t.entity, %table, column = %c.field, "sql sink added a column");
    }
    Ok(Ok(()))
}

/// `"name"` → `name` (identifiers come from [`quote`]).
fn unquote(ident: &str) -> String {
    ident.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(ident).replace("\"\"", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_lost_mid_ddl_is_waited_out_not_fatal() {
        let entity = EntityName::from_static("invoice");
        let lost = || sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed connection"));
        let sqlite_like = |e: sqlx::Error| match e {
            sqlx::Error::Io(_) => SinkError::Unavailable(format!("sqlite: {e}")),
            other => SinkError::Fatal(format!("sqlite: {other}")),
        };
        for classify in [super::super::classify as fn(sqlx::Error) -> SinkError, sqlite_like] {
            match ddl_failed(entity, classify)(lost()) {
                SinkError::Unavailable(m) => assert!(m.contains("`invoice`") && m.contains("peer closed"), "{m}"),
                other => panic!("a lost connection must be retried, got {other:?}"),
            }
            assert!(matches!(ddl_failed(entity, classify)(sqlx::Error::RowNotFound), SinkError::Fatal(m) if m.contains("DDL failed")));
        }
    }

    #[test]
    fn quoting_round_trips() {
        assert_eq!(unquote(&quote("we\"ird")), "we\"ird");
    }
}
