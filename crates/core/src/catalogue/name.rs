//! Entity names: cheap `Copy` symbols for the entities a catalogue declares.
//!
//! Contract: a name read from untrusted input (an event, a CDC table, a topic) resolves only to
//! a name some catalogue registered ([`EntityName::lookup`]); it is never interned, so hostile
//! input cannot grow the symbol table. The built-in example catalogue's names always resolve;
//! every stage still checks that a name belongs to *its* catalogue before using it. Names come into being from config (a catalogue build,
//! [`EntityName::intern`]) or from code ([`EntityName::from_static`], for tests and the demo).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, RwLock};

/// The snake_case name of an entity, as it appears in topics, events, tables and config.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName(&'static str);

/// Spellings accepted for registered names (the name, its plural, the record name, the name
/// without underscores; all lower case) → the name.
static KNOWN: LazyLock<RwLock<HashMap<String, &'static str>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// Why a string is not an entity name a catalogue declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity `{0}`")]
pub struct UnknownEntity(pub String);

impl EntityName {
    /// A name known at compile time. It is not registered: input naming it still resolves only
    /// once a catalogue declares it.
    pub const fn from_static(name: &'static str) -> Self {
        EntityName(name)
    }

    /// Registers `name` (once per distinct name, for the process' lifetime) and the spellings
    /// input may use for it: `record` (the Avro record's local name) and `aliases`. Only
    /// catalogue builds call this; their input is config, bounded in size.
    pub(crate) fn intern(name: &str, record: &str, aliases: &[String]) -> Self {
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        let interned: &'static str = match known.get(name) {
            Some(existing) if *existing == name => existing,
            _ => Box::leak(name.to_string().into_boxed_str()),
        };
        let mut spellings = vec![name.to_string(), format!("{name}s"), name.replace('_', ""), record.to_ascii_lowercase()];
        spellings.extend(aliases.iter().map(|a| a.to_ascii_lowercase()));
        for s in spellings {
            known.entry(s).or_insert(interned);
        }
        EntityName(interned)
    }

    /// The registered entity `s` names: exact, plural, record name or alias, case-insensitive,
    /// `-` read as `_`.
    pub fn lookup(s: &str) -> Result<Self, UnknownEntity> {
        super::register_built_in();
        let lower = s.to_ascii_lowercase().replace('-', "_");
        let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
        known.get(&lower).map(|n| EntityName(n)).ok_or_else(|| UnknownEntity(s.to_string()))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// `<prefix><entity>.changes`, e.g. `studio.production.changes`.
    pub fn changes_topic(self, prefix: &str) -> String {
        format!("{prefix}{}.changes", self.0)
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl FromStr for EntityName {
    type Err = UnknownEntity;
    fn from_str(s: &str) -> Result<Self, UnknownEntity> {
        Self::lookup(s)
    }
}

impl Serialize for EntityName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// Deserializes only registered names (see the module contract).
impl<'de> Deserialize<'de> for EntityName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::lookup(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_resolves_registered_spellings_only() {
        let n = EntityName::intern("purchase_order", "PurchaseOrder", &["po".into()]);
        for s in ["purchase_order", "purchase_orders", "PurchaseOrder", "purchaseorder", "PO", "purchase-order"] {
            assert_eq!(EntityName::lookup(s), Ok(n), "{s}");
        }
        assert!(EntityName::lookup("purchase").is_err());
        assert_eq!(EntityName::intern("purchase_order", "PurchaseOrder", &[]).as_str().as_ptr(), n.as_str().as_ptr());
        assert_eq!(n, EntityName::from_static("purchase_order"));
    }
}
