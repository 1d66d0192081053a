-- Schema contexts (Confluent's `:.context:subject`): ids are unique per context, not globally.
-- Idempotent, like 0001 and 0002: run at every PgStore::connect under the DDL advisory lock.
-- A registry created before contexts keeps its rows and ids: they are the default context `.`.
ALTER TABLE registry_schemas ADD COLUMN IF NOT EXISTS context TEXT NOT NULL DEFAULT '.';
-- A version's schema_id now names a row of its subject's context; the store enforces it.
ALTER TABLE registry_subject_versions DROP CONSTRAINT IF EXISTS registry_subject_versions_schema_id_fkey;
ALTER TABLE registry_schemas DROP CONSTRAINT IF EXISTS registry_schemas_pkey;
DROP INDEX IF EXISTS registry_schemas_identity;
CREATE UNIQUE INDEX IF NOT EXISTS registry_schemas_context_id ON registry_schemas (context, id);
-- Identity = (context, normalized text, references json); md5 keeps large schemas indexable.
CREATE UNIQUE INDEX IF NOT EXISTS registry_schemas_context_identity
    ON registry_schemas (context, md5(schema_text), md5(references_json));
