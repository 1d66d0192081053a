//! Schema contexts, as Confluent Schema Registry: a context is a namespace of subjects with its
//! own schema id space, named like `.finance`. A subject outside the default context `.` is
//! written qualified, `:.finance:payments-value`; `:.:payments-value` is the default context's
//! `payments-value`. A qualified name with an empty subject (`:.finance:`) stands for the
//! context itself in `/config` and `/mode` (its level and mode apply to every subject in it
//! that has none of its own, before the global ones).
//!
//! Contracts:
//! - Ids are unique within a context, not across contexts: the same schema registered in two
//!   contexts may get two ids, and id 1 of `.finance` is not id 1 of `.`. A wire-format reader
//!   therefore needs to know the context, which a client gets by using
//!   `http://registry/contexts/.finance` as its base URL (see [`rewrite_path`]).
//! - A reference names a subject of the referencing subject's own context unless it is
//!   qualified itself.
//! - Subjects are stored and returned qualified (the default context's unqualified), so two
//!   contexts never share a subject.

use super::error::RegistryError;

/// The default context.
pub const DEFAULT: &str = ".";

/// A subject name split into its context and its name within the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualified {
    /// `.` or `.name`.
    pub context: String,
    /// The name within the context; empty for the context itself.
    pub name: String,
}

impl Qualified {
    /// Parses `subject`: `:.ctx:name`, `:.:name` or a plain name (default context).
    pub fn parse(subject: &str) -> Result<Qualified, RegistryError> {
        let Some(rest) = subject.strip_prefix(':') else {
            return Ok(Qualified { context: DEFAULT.to_owned(), name: subject.to_owned() });
        };
        let invalid = |why: &str| {
            RegistryError::InvalidSubject(format!("{subject:?}: {why}; write `:.context:subject`, e.g. `:.finance:payments-value`"))
        };
        let (context, name) = rest.split_once(':').ok_or_else(|| invalid("a qualified subject needs a second `:` after the context"))?;
        validate_context(context).map_err(|why| invalid(&why))?;
        Ok(Qualified { context: context.to_owned(), name: name.to_owned() })
    }

    pub fn is_default(&self) -> bool {
        self.context == DEFAULT
    }

    /// The canonical spelling: unqualified in the default context, `:.ctx:name` elsewhere.
    pub fn subject(&self) -> String {
        qualify(&self.context, &self.name)
    }

    /// The key of this subject's context level and mode (`:.ctx:`), `None` for the default
    /// context, whose level and mode are the global ones.
    pub fn context_key(&self) -> Option<String> {
        (!self.is_default()).then(|| format!(":{}:", self.context))
    }
}

/// `name` in `context`, canonically spelled.
pub fn qualify(context: &str, name: &str) -> String {
    if context == DEFAULT { name.to_owned() } else { format!(":{context}:{name}") }
}

/// The canonical form of `subject` (`:.:x` → `x`), validating its context.
pub fn canonical(subject: &str) -> Result<String, RegistryError> {
    Ok(Qualified::parse(subject)?.subject())
}

/// The context of an already canonical subject (stored subjects are).
pub fn context_of(subject: &str) -> &str {
    subject.strip_prefix(':').and_then(|rest| rest.split_once(':')).map_or(DEFAULT, |(context, _)| context)
}

/// A reference's subject, as written inside a schema of `context`, made canonical: unqualified
/// names belong to the referencing schema's context.
pub fn resolve_reference(context: &str, referenced: &str) -> Result<String, RegistryError> {
    if referenced.starts_with(':') { canonical(referenced) } else { Ok(qualify(context, referenced)) }
}

/// A context name: `.` or `.` followed by letters, digits, `_`, `-` and `.` (at most 255).
fn validate_context(context: &str) -> Result<(), String> {
    let Some(body) = context.strip_prefix('.') else {
        return Err(format!("the context {context:?} must start with `.`"));
    };
    if context.len() > 255 {
        return Err("a context name has at most 255 characters".into());
    }
    match body.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        Some(c) => Err(format!("the context {context:?} contains {c:?} (letters, digits, `_`, `-` and `.` only)")),
        None => Ok(()),
    }
}

/// Maps Confluent's context URL prefix onto the plain API, so that a client whose base URL is
/// `http://registry/contexts/.ctx` works inside that context:
/// `/contexts/.ctx/subjects/s/...` → `/subjects/:.ctx:s/...` (also under `/config`, `/mode` and
/// `/compatibility/subjects`), `/contexts/.ctx/subjects` → `/subjects?subjectPrefix=:.ctx:`,
/// `/contexts/.ctx/schemas/ids/N...` → `/schemas/ids/N...?subject=:.ctx:`, `/contexts/.ctx/config`
/// and `/mode` → the context's own level and mode. `None`: not a context path, or an invalid one.
pub fn rewrite_path(path: &str, query: Option<&str>) -> Option<String> {
    let rest = path.strip_prefix("/contexts/")?;
    let (context, tail) = rest.split_once('/')?;
    validate_context(context).ok()?;
    let prefix = format!(":{context}:");
    let (path, added) = if tail == "subjects" {
        ("/subjects".to_owned(), Some(format!("subjectPrefix={prefix}")))
    } else if let Some(subject) = tail.strip_prefix("subjects/") {
        (format!("/subjects/{prefix}{subject}"), None)
    } else if let Some(subject) = tail.strip_prefix("compatibility/subjects/") {
        (format!("/compatibility/subjects/{prefix}{subject}"), None)
    } else if tail.starts_with("schemas/") {
        (format!("/{tail}"), Some(format!("subject={prefix}")))
    } else if tail == "config" || tail == "mode" {
        (format!("/{tail}/{prefix}"), None)
    } else if let Some(subject) = tail.strip_prefix("config/").or_else(|| tail.strip_prefix("mode/")) {
        (format!("/{}/{prefix}{subject}", &tail[..tail.find('/')?]), None)
    } else {
        return None;
    };
    let query: Vec<&str> = query.into_iter().filter(|q| !q.is_empty()).collect();
    let added: Vec<String> = added.into_iter().collect();
    let all: Vec<&str> = query.into_iter().chain(added.iter().map(String::as_str)).collect();
    Some(if all.is_empty() { path } else { format!("{path}?{}", all.join("&")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_into_context_and_name() {
        let q = Qualified::parse(":.finance:payments-value").unwrap();
        assert_eq!((q.context.as_str(), q.name.as_str()), (".finance", "payments-value"));
        assert_eq!(q.subject(), ":.finance:payments-value");
        assert_eq!(q.context_key().as_deref(), Some(":.finance:"));
        assert_eq!(canonical(":.:payments-value").unwrap(), "payments-value");
        assert!(Qualified::parse("payments-value").unwrap().is_default());
        assert_eq!(Qualified::parse(":.finance:").unwrap().name, "");
        assert_eq!(context_of(":.finance:x"), ".finance");
        assert_eq!(context_of("x"), ".");
    }

    #[test]
    fn malformed_contexts_are_refused_with_the_fix() {
        for bad in [":finance:x", ":.fin ance:x", ":.finance"] {
            let e = Qualified::parse(bad).unwrap_err();
            assert_eq!(e.error_code(), 42208, "{bad}");
            assert!(e.to_string().contains(":.context:subject"), "{e}");
        }
    }

    #[test]
    fn references_resolve_in_the_referencing_context() {
        assert_eq!(resolve_reference(".finance", "money").unwrap(), ":.finance:money");
        assert_eq!(resolve_reference(".finance", ":.:money").unwrap(), "money");
        assert_eq!(resolve_reference(".", "money").unwrap(), "money");
    }

    #[test]
    fn context_urls_map_onto_the_plain_api() {
        let r = |p, q| rewrite_path(p, q);
        assert_eq!(r("/contexts/.f/subjects", None).unwrap(), "/subjects?subjectPrefix=:.f:");
        assert_eq!(r("/contexts/.f/subjects", Some("deleted=true")).unwrap(), "/subjects?deleted=true&subjectPrefix=:.f:");
        assert_eq!(r("/contexts/.f/subjects/s/versions/1", None).unwrap(), "/subjects/:.f:s/versions/1");
        assert_eq!(r("/contexts/.f/schemas/ids/3", None).unwrap(), "/schemas/ids/3?subject=:.f:");
        assert_eq!(r("/contexts/.f/config", None).unwrap(), "/config/:.f:");
        assert_eq!(r("/contexts/.f/mode/s", None).unwrap(), "/mode/:.f:s");
        assert_eq!(
            r("/contexts/.f/compatibility/subjects/s/versions/latest", None).unwrap(),
            "/compatibility/subjects/:.f:s/versions/latest"
        );
        assert_eq!(r("/contexts/nodot/subjects", None), None);
        assert_eq!(r("/subjects", None), None);
    }
}
