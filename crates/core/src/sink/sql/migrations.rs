//! A deployment's own SQL (`sinks.sql.migrations`): a directory of `NNNN_name.sql` files the
//! SQL sink applies once each, in version order, after the catalogue's generated tables: the
//! place for analyst views over the entity tables, extra indexes, grants. The sink itself needs
//! none; the demo ships its analyst views this way.
//!
//! Contract: files are read once at connect; a `.sql` file whose name is not
//! `<digits>_<name>.sql`, or two files with one version, refuse the start naming the file and the
//! fix. Other files (a README) are ignored. Applied versions are recorded in
//! `slate_sql_migrations`, so editing an applied file changes nothing: add a new file instead.

use crate::sink::SinkError;
use std::path::Path;

/// One file: its version (the leading digits), its name (the rest) and its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    pub sql: String,
}

/// Reads `dir`'s migrations, sorted by version. `None` → none.
pub fn read(dir: Option<&Path>) -> Result<Vec<Migration>, SinkError> {
    let Some(dir) = dir else { return Ok(Vec::new()) };
    let fatal = |message: String| SinkError::Fatal(format!("sinks.sql.migrations = {:?}: {message}", dir.display().to_string()));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| fatal(format!("cannot list the directory ({e}); point it at a directory of NNNN_name.sql files")))?;
    let mut found: Vec<Migration> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| fatal(format!("cannot list the directory ({e})")))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).filter(|f| f.ends_with(".sql")) else { continue };
        let (version, name) = parse_name(file)
            .ok_or_else(|| fatal(format!("{file}: not a migration name; name it <version>_<name>.sql, e.g. 0003_spend_by_vendor.sql")))?;
        if let Some(other) = found.iter().find(|m| m.version == version) {
            return Err(fatal(format!("{file} and version {} ({}) share version {version}; renumber one", other.version, other.name)));
        }
        let sql = std::fs::read_to_string(&path).map_err(|e| fatal(format!("cannot read {file}: {e}")))?;
        found.push(Migration { version, name, sql });
    }
    found.sort_by_key(|m| m.version);
    Ok(found)
}

/// `0002_views.sql` → (2, "views").
fn parse_name(file: &str) -> Option<(i32, String)> {
    let stem = file.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_version_and_name() {
        assert_eq!(parse_name("0002_views.sql"), Some((2, "views".to_string())));
        assert_eq!(parse_name("10_spend_by_vendor.sql"), Some((10, "spend_by_vendor".to_string())));
        for bad in ["views.sql", "_views.sql", "0002_.sql", "v2_views.sql", "99999999999_x.sql"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_directory_reads_in_version_order_and_refuses_bad_names_and_clashes() {
        let dir = std::env::temp_dir().join(format!("slate-migrations-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0010_b.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.join("0002_a.sql"), "SELECT 1").unwrap();
        std::fs::write(dir.join("README.md"), "ignored").unwrap();
        let read_back = read(Some(&dir)).unwrap();
        assert_eq!(read_back.iter().map(|m| (m.version, m.name.as_str())).collect::<Vec<_>>(), [(2, "a"), (10, "b")]);

        std::fs::write(dir.join("2_again.sql"), "SELECT 3").unwrap();
        let e = read(Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("sinks.sql.migrations") && e.contains("share version 2") && e.contains("renumber"), "{e}");
        std::fs::remove_file(dir.join("2_again.sql")).unwrap();

        std::fs::write(dir.join("views.sql"), "SELECT 4").unwrap();
        let e = read(Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("views.sql") && e.contains("<version>_<name>.sql"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let e = read(Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("cannot list the directory"), "{e}");
        assert_eq!(read(None).unwrap(), Vec::new());
    }
}
