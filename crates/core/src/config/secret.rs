//! Values that must never reach logs or `slate config show`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a redacted value prints as, everywhere.
pub const REDACTED: &str = "***redacted***";

/// A secret string. `Debug`, `Display` and `Serialize` all print [`REDACTED`]; only
/// [`Secret::expose`] gives the value, at the one place it is handed to a client library.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts numbers and booleans too: an env override like `SLATE_KAFKA__SASL__PASSWORD=1234`
    /// is parsed as an integer before it reaches this field.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Int(i64),
            Float(f64),
            Bool(bool),
        }
        Ok(Secret(match Raw::deserialize(d)? {
            Raw::Str(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
        }))
    }
}

/// A URL whose password part is secret (database URLs). Prints with the password redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any `user:password@` password replaced by [`REDACTED`].
    pub fn redacted(&self) -> String {
        redact_url_password(&self.0)
    }
}

/// Replaces the password of `scheme://user:password@host…`; other strings are returned unchanged.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!("{}{}:{}{}", &url[..scheme_end + 3], &userinfo[..colon], REDACTED, &rest[at..])
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_password_is_redacted() {
        let u = SecretUrl::new("postgres://app:pa:ss@db:5432/slate?sslmode=require");
        assert_eq!(u.redacted(), format!("postgres://app:{REDACTED}@db:5432/slate?sslmode=require"));
        assert!(!format!("{u:?}").contains("pa:ss"));
        assert_eq!(redact_url_password("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url_password("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url_password("not a url"), "not a url");
    }
}
