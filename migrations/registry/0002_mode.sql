-- Registry modes (READWRITE, READONLY, IMPORT); the empty subject '' holds the global mode.
CREATE TABLE IF NOT EXISTS registry_mode (
    subject TEXT PRIMARY KEY,
    mode    TEXT NOT NULL
);
