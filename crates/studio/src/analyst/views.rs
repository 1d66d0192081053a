//! The analyst views' SQL (`migrations/sql/` for PostgreSQL, `migrations/sqlite/` for SQLite):
//! the studio example's hand-written tables and the views this API reads, applied by the SQL
//! sink as a deployment's own migrations (`sinks.sql.migrations`, `sinks.sql.refresh_views`).
//! The platform never applies them by itself; the demo, which runs from anywhere, writes the
//! embedded copies to a directory and points the sink at it.

use std::path::Path;

/// PostgreSQL: file name and SQL, in order.
pub const POSTGRES: [(&str, &str); 2] = [
    ("0001_tables.sql", include_str!("../../../../migrations/sql/0001_tables.sql")),
    ("0002_views.sql", include_str!("../../../../migrations/sql/0002_views.sql")),
];
/// SQLite: the same tables and views (plain views).
pub const SQLITE: [(&str, &str); 2] = [
    ("0001_tables.sql", include_str!("../../../../migrations/sqlite/0001_tables.sql")),
    ("0002_views.sql", include_str!("../../../../migrations/sqlite/0002_views.sql")),
];
/// The materialized views to refresh (`sinks.sql.refresh_views`, PostgreSQL only).
pub const REFRESH: [&str; 1] = ["budget_vs_actuals"];

/// Writes the `sqlite` (or PostgreSQL) files into `dir`, creating it; answers `dir` for
/// `sinks.sql.migrations`.
pub fn write_to(dir: &Path, sqlite: bool) -> std::io::Result<&Path> {
    std::fs::create_dir_all(dir)?;
    for (name, sql) in if sqlite { SQLITE } else { POSTGRES } {
        std::fs::write(dir.join(name), sql)?;
    }
    Ok(dir)
}
