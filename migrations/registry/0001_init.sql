-- Schema registry storage. Idempotent: run at every PgStore::connect under an advisory lock.

-- A schema is immutable once stored; its id is global and never reused.
-- Identity and id uniqueness are per context: see 0003_contexts.sql, which also drops this
-- primary key (ids are allocated per context by the store, max + 1 under a lock).
CREATE TABLE IF NOT EXISTS registry_schemas (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema_text     TEXT NOT NULL,
    references_json TEXT NOT NULL
);

-- Versions of a subject. Soft delete flips `deleted`; permanent delete removes the row.
CREATE TABLE IF NOT EXISTS registry_subject_versions (
    subject   TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    schema_id BIGINT  NOT NULL REFERENCES registry_schemas (id),
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS registry_subject_versions_schema
    ON registry_subject_versions (schema_id);

-- Compatibility configuration; the empty subject '' holds the global level.
CREATE TABLE IF NOT EXISTS registry_config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
