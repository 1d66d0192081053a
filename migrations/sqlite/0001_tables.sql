-- SQL sink on SQLite: the same tables as migrations/sql/0001_tables.sql (PostgreSQL), applied
-- once (sinks.sql.migrations, after the generated tables; recorded in slate_sql_migrations) inside a BEGIN IMMEDIATE
-- transaction, which serializes concurrent starts the way PostgreSQL's advisory lock does.
--
-- Every entity table has:
--   id          the entity id (the Kafka key), primary key
--   version     the source-of-truth version of the state held; writes apply only if newer
--   deleted     1 for a tombstone row: the business columns are NULL, the version is kept so
--               an older update replayed after the delete is rejected
--   event_ts    source timestamp of the newest change event behind the row (ISO-8601 UTC text,
--               'YYYY-MM-DDTHH:MM:SS.SSSZ', which SQLite's date functions read)
--   updated_at  when the sink last applied a write to the row (same format)
--
-- Tables are STRICT (SQLite >= 3.37, bundled with sqlx): a value of the wrong type is refused
-- instead of being stored as whatever it is, so the columns really are typed. SQLite has no
-- DATE type: dates are 'YYYY-MM-DD' text, checked by a CHECK that date() round-trips them (they
-- sort and compare correctly as text). Money is INTEGER minor units (cents); booleans are 0/1;
-- enums are text (symbols can grow without a migration).

CREATE TABLE IF NOT EXISTS production (
    id          TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts    TEXT,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    title       TEXT,
    status      TEXT,
    genre       TEXT,
    currency    TEXT,
    budget_id   TEXT,
    schedule_id TEXT
) STRICT;

CREATE TABLE IF NOT EXISTS talent (
    id         TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts   TEXT,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    name       TEXT,
    role       TEXT
) STRICT;

-- Talent.deals: one row per deal, in the record's order (ordinal), replaced whenever the talent
-- row is written. Foreign keys are enforced (sqlx turns PRAGMA foreign_keys on).
CREATE TABLE IF NOT EXISTS talent_deal (
    talent_id     TEXT    NOT NULL REFERENCES talent (id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    production_id TEXT    NOT NULL,
    fee           INTEGER NOT NULL,
    currency      TEXT    NOT NULL,
    PRIMARY KEY (talent_id, ordinal)
) STRICT;
CREATE INDEX IF NOT EXISTS talent_deal_production ON talent_deal (production_id);

CREATE TABLE IF NOT EXISTS schedule (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts      TEXT,
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    production_id TEXT,
    start_date    TEXT CHECK (start_date IS NULL OR date(start_date) IS start_date),
    launch_date   TEXT CHECK (launch_date IS NULL OR date(launch_date) IS launch_date)
) STRICT;
CREATE INDEX IF NOT EXISTS schedule_production ON schedule (production_id);

CREATE TABLE IF NOT EXISTS budget (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts      TEXT,
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    production_id TEXT,
    currency      TEXT,
    total         INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS budget_production ON budget (production_id);

-- Budget.lines: one row per cost category line.
CREATE TABLE IF NOT EXISTS budget_line (
    budget_id TEXT    NOT NULL REFERENCES budget (id) ON DELETE CASCADE,
    ordinal   INTEGER NOT NULL,
    category  TEXT    NOT NULL,
    amount    INTEGER NOT NULL,
    PRIMARY KEY (budget_id, ordinal)
) STRICT;

CREATE TABLE IF NOT EXISTS cash_flow (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts      TEXT,
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    production_id TEXT,
    currency      TEXT,
    total         INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS cash_flow_production ON cash_flow (production_id);

-- CashFlow.months: `month` is the first day of the calendar month ('YYYY-MM-01' for the
-- record's YYYY-MM).
CREATE TABLE IF NOT EXISTS cash_flow_month (
    cash_flow_id TEXT    NOT NULL REFERENCES cash_flow (id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    month        TEXT    NOT NULL CHECK (strftime('%Y-%m-01', month) IS month),
    amount       INTEGER NOT NULL,
    PRIMARY KEY (cash_flow_id, ordinal)
) STRICT;

CREATE TABLE IF NOT EXISTS payment (
    id            TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    event_ts      TEXT,
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    production_id TEXT,
    talent_id     TEXT,
    amount        INTEGER,
    currency      TEXT,
    status        TEXT,
    due_date      TEXT CHECK (due_date IS NULL OR date(due_date) IS due_date)
) STRICT;
CREATE INDEX IF NOT EXISTS payment_production ON payment (production_id);
