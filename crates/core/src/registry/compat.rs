//! Compatibility levels and the Avro compatibility check.
//!
//! Semantics (as Confluent): BACKWARD = the new schema can read data written with the latest
//! live version; FORWARD = the latest live version can read data written with the new schema;
//! FULL = both. `*_TRANSITIVE` apply the same rule against every live version, not only the
//! latest. Resolution is decided by `apache_avro::schema_compatibility::SchemaCompatibility`;
//! a `Partial` answer (e.g. a writer union branch or enum symbol the reader lacks) counts as
//! incompatible, because some data written under the writer schema would fail to resolve.
//!
//! Limitation: referenced named types appear as `Schema::Ref` in the parsed schema, so they
//! are compared by full name only; their own evolution is checked in their own subject.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::RegistryError;

/// A Confluent compatibility level, spelled with the Confluent upper-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] =
        [Self::None, Self::Backward, Self::BackwardTransitive, Self::Forward, Self::ForwardTransitive, Self::Full, Self::FullTransitive];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the check runs against every live version rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }

    fn new_reads_old(self) -> bool {
        matches!(self, Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive)
    }

    fn old_reads_new(self) -> bool {
        matches!(self, Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive)
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    /// Accepts the Confluent names case-insensitively (clients upper-case, humans may not).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RegistryError::InvalidCompatibilityLevel(s.to_owned()))
    }
}

impl Serialize for CompatibilityLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompatibilityLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks `new` against `existing` (live versions, newest first, each with its version number).
/// Non-transitive levels only look at the first entry. Returns one message per violation;
/// an empty result means compatible.
pub fn check(level: CompatibilityLevel, new: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
    let against = if level.is_transitive() { existing } else { existing.get(..1).unwrap_or(&[]) };
    let mut messages = Vec::new();
    for (version, old) in against {
        if level.new_reads_old()
            && let Some(reason) = can_read(old, new)
        {
            messages.push(format!("new schema cannot read data written with version {version}: {reason}"));
        }
        if level.old_reads_new()
            && let Some(reason) = can_read(new, old)
        {
            messages.push(format!("version {version} cannot read data written with the new schema: {reason}"));
        }
    }
    messages
}

/// `None` when `reader` can read everything written with `writer`, else the reason.
pub(crate) fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some("only partially compatible (some writer values cannot be resolved)".to_owned()),
        Err(err) => Some(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    #[test]
    fn level_names_round_trip() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.to_string().parse::<CompatibilityLevel>().unwrap(), level);
        }
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }

    #[test]
    fn backward_rejects_new_field_without_default() {
        let v1 = record(r#"{"name":"a","type":"int"}"#);
        let v2 = record(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#);
        assert!(!check(CompatibilityLevel::Backward, &v2, &[(1, v1.clone())]).is_empty());
        assert!(check(CompatibilityLevel::Forward, &v2, &[(1, v1)]).is_empty());
    }

    #[test]
    fn transitive_checks_older_versions() {
        let v1 = record(r#"{"name":"a","type":"int"}"#);
        let v2 = record(r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":0}"#);
        let v3 = record(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#);
        let existing = [(2, v2), (1, v1)];
        assert!(check(CompatibilityLevel::Backward, &v3, &existing).is_empty());
        assert!(!check(CompatibilityLevel::BackwardTransitive, &v3, &existing).is_empty());
    }
}
