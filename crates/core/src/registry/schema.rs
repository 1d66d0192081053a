//! Schema text normalization and Avro parsing with references.
//!
//! "Same schema" means the same normalized text and the same references. The normalized text is
//! the schema parsed as JSON and re-serialized compactly with object keys sorted: whitespace and
//! key order do not matter, but a `doc` change is a new schema (as in Confluent, which compares
//! its normalized string, not the Avro Parsing Canonical Form that drops docs and defaults).

use apache_avro::Schema;

use super::error::RegistryError;

/// Normalizes an Avro schema text; fails with `InvalidSchema` when it is not JSON.
pub fn normalize(text: &str) -> Result<String, RegistryError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| RegistryError::InvalidSchema(format!("schema is not valid json: {err}")))?;
    Ok(value.to_string())
}

/// Parses `text` as Avro, resolving named types from `dependencies` (the texts of every
/// referenced schema, transitively). Each dependency must be a named type.
pub fn parse(text: &str, dependencies: &[String]) -> Result<Schema, RegistryError> {
    let parsed = if dependencies.is_empty() {
        Schema::parse_str(text)
    } else {
        Schema::parse_str_with_list(text, dependencies).map(|(schema, _)| schema)
    };
    parsed.map_err(|err| RegistryError::InvalidSchema(format!("invalid avro schema: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_ignores_whitespace_and_key_order_but_not_docs() {
        let a = normalize(r#"{"type":"record","name":"R","fields":[]}"#).unwrap();
        let b = normalize("{ \"name\": \"R\",\n \"fields\": [], \"type\": \"record\" }").unwrap();
        let c = normalize(r#"{"type":"record","name":"R","doc":"d","fields":[]}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn parse_resolves_dependencies() {
        let dep = r#"{"type":"record","name":"Money","namespace":"n","fields":[{"name":"c","type":"long"}]}"#;
        let main = r#"{"type":"record","name":"P","namespace":"n","fields":[{"name":"m","type":"n.Money"}]}"#;
        assert!(parse(main, &[]).is_err());
        assert!(parse(main, &[dep.to_owned()]).is_ok());
    }
}
