//! Registry modes, as Confluent: READWRITE (the default), READONLY (no registrations or
//! deletes) and IMPORT (registrations carry their own id and version, no compatibility check:
//! how schemas move between registries with their ids intact). A subject's own mode wins over
//! the global one.

use std::str::FromStr;

use serde::Serialize;

use super::error::RegistryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[serde(rename = "READWRITE")]
    ReadWrite,
    #[serde(rename = "READONLY")]
    ReadOnly,
    Import,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "READWRITE",
            Self::ReadOnly => "READONLY",
            Self::Import => "IMPORT",
        }
    }
}

impl FromStr for Mode {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, RegistryError> {
        match s {
            "READWRITE" => Ok(Self::ReadWrite),
            "READONLY" | "READONLY_OVERRIDE" => Ok(Self::ReadOnly),
            "IMPORT" => Ok(Self::Import),
            other => Err(RegistryError::InvalidMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_42204() {
        for m in [Mode::ReadWrite, Mode::ReadOnly, Mode::Import] {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.as_str()));
        }
        assert_eq!("SIDEWAYS".parse::<Mode>().unwrap_err().error_code(), 42204);
    }
}
