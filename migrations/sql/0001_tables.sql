-- The studio example's tables, one per entity (slate.<entity>.enriched): the deployment's own SQL
-- (sinks.sql.migrations), applied once after the tables the sink generates from the records, whose
-- names and columns these match (CREATE … IF NOT EXISTS: they add the indexes and foreign keys).
--
-- Every entity table has:
--   id          the entity id (the Kafka key), primary key
--   version     the source-of-truth version of the state held; writes apply only if newer
--   deleted     true for a tombstone row: the business columns are NULL, the version is kept so
--               an older update replayed after the delete is rejected
--   event_ts    source timestamp of the newest change event behind the row
--   updated_at  when the sink last applied a write to the row
-- Business columns are nullable only because tombstones null them; live rows always carry them.
-- Money is bigint minor units (cents); enums are text (symbols can grow without a migration).

CREATE TABLE IF NOT EXISTS production (
    id          TEXT PRIMARY KEY,
    version     BIGINT      NOT NULL,
    deleted     BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts    TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    title       TEXT,
    status      TEXT,
    genre       TEXT,
    currency    TEXT,
    budget_id   TEXT,
    schedule_id TEXT
);

CREATE TABLE IF NOT EXISTS talent (
    id         TEXT PRIMARY KEY,
    version    BIGINT      NOT NULL,
    deleted    BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts   TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    name       TEXT,
    role       TEXT
);

-- Talent.deals: one row per deal, in the record's order (ordinal), replaced whenever the talent
-- row is written.
CREATE TABLE IF NOT EXISTS talent_deal (
    talent_id     TEXT    NOT NULL REFERENCES talent (id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    production_id TEXT    NOT NULL,
    fee           BIGINT  NOT NULL,
    currency      TEXT    NOT NULL,
    PRIMARY KEY (talent_id, ordinal)
);
CREATE INDEX IF NOT EXISTS talent_deal_production ON talent_deal (production_id);

CREATE TABLE IF NOT EXISTS schedule (
    id            TEXT PRIMARY KEY,
    version       BIGINT      NOT NULL,
    deleted       BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts      TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    production_id TEXT,
    start_date    DATE,
    launch_date   DATE
);
CREATE INDEX IF NOT EXISTS schedule_production ON schedule (production_id);

CREATE TABLE IF NOT EXISTS budget (
    id            TEXT PRIMARY KEY,
    version       BIGINT      NOT NULL,
    deleted       BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts      TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    production_id TEXT,
    currency      TEXT,
    total         BIGINT
);
CREATE INDEX IF NOT EXISTS budget_production ON budget (production_id);

-- Budget.lines: one row per cost category line.
CREATE TABLE IF NOT EXISTS budget_line (
    budget_id TEXT    NOT NULL REFERENCES budget (id) ON DELETE CASCADE,
    ordinal   INTEGER NOT NULL,
    category  TEXT    NOT NULL,
    amount    BIGINT  NOT NULL,
    PRIMARY KEY (budget_id, ordinal)
);

CREATE TABLE IF NOT EXISTS cash_flow (
    id            TEXT PRIMARY KEY,
    version       BIGINT      NOT NULL,
    deleted       BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts      TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    production_id TEXT,
    currency      TEXT,
    total         BIGINT
);
CREATE INDEX IF NOT EXISTS cash_flow_production ON cash_flow (production_id);

-- CashFlow.months: `month` is the first day of the calendar month (the record's YYYY-MM).
CREATE TABLE IF NOT EXISTS cash_flow_month (
    cash_flow_id TEXT    NOT NULL REFERENCES cash_flow (id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    month        DATE    NOT NULL,
    amount       BIGINT  NOT NULL,
    PRIMARY KEY (cash_flow_id, ordinal)
);

CREATE TABLE IF NOT EXISTS payment (
    id            TEXT PRIMARY KEY,
    version       BIGINT      NOT NULL,
    deleted       BOOLEAN     NOT NULL DEFAULT FALSE,
    event_ts      TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    production_id TEXT,
    talent_id     TEXT,
    amount        BIGINT,
    currency      TEXT,
    status        TEXT,
    due_date      DATE
);
CREATE INDEX IF NOT EXISTS payment_production ON payment (production_id);
