//! Configuration: a TOML file, then `SLATE_*` environment overrides, then command-line flags,
//! deserialized into typed sections and validated once at start.
//!
//! Contract: every failure names the offending key (`kafka.sasl.password`, env var
//! `SLATE_KAFKA__SASL__PASSWORD`) and says how to fix it; unknown keys are errors, never ignored;
//! secrets are typed ([`Secret`], [`SecretUrl`]) so that `Debug` and `slate config show` redact them.
//!
//! Environment overrides: `SLATE_<SECTION>__<KEY>` with `__` between levels, case-insensitive,
//! e.g. `SLATE_KAFKA__BOOTSTRAP_SERVERS=broker:9092`, `SLATE_STUDIO__FAULTS__ERROR_RATE=0.3`.
//! Values are read as TOML scalars (`true`, `42`, `0.5`) and otherwise as strings.
//! `SLATE_CONFIG` (the config file path) and `SLATE_LOG` (log filter) are not overrides.

mod api;
mod catalogue;
mod consumer;
mod dashboard;
mod enrich;
mod publish;
mod rollout;
mod router;
mod secret;
mod sections;
mod shadow;
mod sinks;
mod standby;
mod studio;

pub use api::ApiConfig;
pub use catalogue::CatalogueConfig;
pub use consumer::{Assignment, ConsumerConfig};
pub use dashboard::DashboardConfig;
pub use enrich::*;
pub use publish::PublishConfig;
pub use rollout::{RolloutConfig, slot};
pub use router::{RegionConfig, RouterConfig};
pub use secret::{REDACTED, Secret, SecretUrl, redact_url_password};
pub use sections::*;
pub use shadow::ShadowConfig;
pub use sinks::*;
pub use standby::StandbyConfig;
pub use studio::*;

use crate::catalogue::{Catalogue, Subjects};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Env vars with the `SLATE_` prefix that are not config overrides.
pub const RESERVED_ENV: &[&str] = &["SLATE_CONFIG", "SLATE_LOG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub catalogue: CatalogueConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistryClientConfig,
    pub registry_server: RegistryServerConfig,
    pub studio: StudioConfig,
    pub enricher: EnricherConfig,
    pub sources: SourcesConfig,
    pub sinks: SinksConfig,
    pub api: ApiConfig,
    pub dashboard: DashboardConfig,
    pub publish: PublishConfig,
    pub router: RouterConfig,
    pub shadow: ShadowConfig,
    /// The catalogue `catalogue` declares, built by [`Config::load`] (or [`Config::with_catalogue`]).
    #[serde(skip)]
    entities: catalogue::Built,
}

/// Where one override came from, to name it in errors.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dotted key path, e.g. `studio.load.mutations_per_sec`.
    pub key: String,
    pub value: String,
    /// `env SLATE_…` or `--flag`.
    pub origin: String,
}

impl Config {
    /// Loads `path` (if any), applies `overrides` in order, deserializes and validates. A
    /// catalogue entry naming a registry subject is refused here: use [`Config::load_with`]
    /// with the records `catalogue::subjects::fetch` read (as every `slate` command does).
    pub fn load(path: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
        Self::load_with(path, overrides, &Subjects::none())
    }

    /// [`Config::load`], with the records of subject entries already read from the registry.
    pub fn load_with(path: Option<&Path>, overrides: &[Override], subjects: &Subjects) -> Result<Config, ConfigError> {
        let mut config = Self::parse(path, overrides)?;
        let checked = config.catalogue.build(subjects).and_then(|c| {
            config.entities = catalogue::Built(c);
            config.validate()
        });
        checked.map_err(|e| match e {
            ConfigError::Invalid { key, message } => {
                ConfigError::Invalid { message: format!("{message}{}", origin_hint(overrides, &key)), key }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// The `[catalogue]` and `[registry]` sections alone, unvalidated: what a start needs to read
    /// subject entries from the registry before [`Config::load_with`].
    pub fn catalogue_and_registry(
        path: Option<&Path>,
        overrides: &[Override],
    ) -> Result<(CatalogueConfig, RegistryClientConfig), ConfigError> {
        let config = Self::parse(path, overrides)?;
        config.registry.validate()?;
        Ok((config.catalogue, config.registry))
    }

    /// File + overrides, deserialized; nothing built or validated.
    fn parse(path: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut tree, o)?;
        }
        serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            ConfigError::Invalid { message: format!("{message}{}", origin_hint(overrides, &key)), key }
        })
    }

    /// The entities of this deployment.
    pub fn entities(&self) -> &Arc<Catalogue> {
        &self.entities.0
    }

    /// Rebuilds the catalogue from `self.catalogue` (for configs assembled in code).
    pub fn with_catalogue(mut self) -> Result<Config, ConfigError> {
        self.entities = catalogue::Built(self.catalogue.build(&Subjects::none())?);
        self.sources.validate_entities(&self.entities.0)?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sources.validate_entities(&self.entities.0)?;
        self.kafka.validate()?;
        self.registry.validate()?;
        self.registry_server.validate()?;
        self.studio.validate()?;
        self.enricher.validate()?;
        self.validate_delivery()?;
        self.sources.validate()?;
        self.sinks.validate()?;
        self.api.validate()?;
        self.publish.validate(&self.entities.0)?;
        self.router.validate(&self.entities.0)?;
        self.shadow.validate()?;
        self.dashboard.validate()
    }

    /// Exactly-once needs the idempotent producer, and librdkafka refuses a message timeout
    /// longer than the transaction's.
    fn validate_delivery(&self) -> Result<(), ConfigError> {
        if self.enricher.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        if self.kafka.standby.is_some() {
            return Err(sections::invalid(
                "kafka.standby",
                "cannot be used with enricher.delivery = \"exactly_once\": a transaction cannot span two clusters; remove one",
            ));
        }
        if self.kafka.producer.acks != Acks::All {
            return Err(sections::invalid(
                "kafka.producer.acks",
                "must be \"all\" with enricher.delivery = \"exactly_once\" (transactions need the idempotent producer)",
            ));
        }
        if self.kafka.producer.message_timeout > self.enricher.transaction_timeout {
            return Err(sections::invalid(
                "kafka.producer.message_timeout",
                format!(
                    "{:?} exceeds enricher.transaction_timeout {:?}; with exactly_once lower it or raise the transaction timeout",
                    self.kafka.producer.message_timeout, self.enricher.transaction_timeout
                ),
            ));
        }
        Ok(())
    }

    /// The live enriched topics' prefix the shadow validator compares against.
    pub fn shadow_live_prefix(&self) -> &str {
        self.shadow.live_prefix.as_deref().unwrap_or(&self.enricher.output_topic_prefix)
    }

    /// The effective config as TOML, secrets redacted: what `slate config show` prints.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes to TOML")
    }
}

/// " (set by env SLATE_…)" when the last override of `key` came from the environment or a flag.
fn origin_hint(overrides: &[Override], key: &str) -> String {
    overrides.iter().rev().find(|o| o.key == key).map(|o| format!(" (set by {})", o.origin)).unwrap_or_default()
}

/// Collects `SLATE_*` overrides from an environment listing (pass `std::env::vars()`).
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Override>, ConfigError> {
    let mut out = Vec::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("SLATE_") else { continue };
        if RESERVED_ENV.contains(&var.as_str()) {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "has an empty key segment; use SLATE_SECTION__KEY, e.g. SLATE_KAFKA__BOOTSTRAP_SERVERS".into(),
            });
        }
        out.push(Override { key: parts.join("."), value, origin: format!("env {var}") });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn apply_override(tree: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    let parts: Vec<&str> = o.key.split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut table = tree;
    for (i, part) in parents.iter().enumerate() {
        let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env { var: o.origin.clone(), message: format!("`{}` is not a section", parts[..=i].join(".")) })?;
    }
    table.insert(last.to_string(), scalar(&o.value));
    Ok(())
}

/// Reads an override value as a TOML scalar when it is one, else as a plain string.
fn scalar(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Array(_))) => v,
            Some(toml::Value::String(s)) => toml::Value::String(s),
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests;
