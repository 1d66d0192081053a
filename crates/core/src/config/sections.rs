//! The sections of the config file. Each struct rejects unknown keys; `validate` checks what
//! serde cannot (ranges, combinations) and names the key and the fix.

use super::{ConfigError, ConsumerConfig, Secret, SecretUrl};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    pub client_id: String,
    pub security_protocol: SecurityProtocol,
    pub tls: Option<TlsConfig>,
    pub sasl: Option<SaslConfig>,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    /// A warm standby cluster (`standby.rs`); unset: one cluster.
    pub standby: Option<super::standby::StandbyConfig>,
    /// Extra librdkafka properties passed through verbatim, for settings slate does not model.
    /// Keys slate manages itself are rejected so that two sources never disagree.
    pub properties: KafkaProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            client_id: "slate".into(),
            security_protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
            producer: ProducerConfig::default(),
            consumer: ConsumerConfig::default(),
            standby: None,
            properties: KafkaProperties::default(),
        }
    }
}

impl KafkaConfig {
    /// The standby cluster's client settings (`[kafka.standby]`): these with its bootstrap
    /// servers.
    pub fn standby_cluster(&self) -> Option<KafkaConfig> {
        Some(self.on_cluster(&self.standby.as_ref()?.bootstrap_servers))
    }

    /// These client settings (TLS, SASL, producer, consumer) for another cluster: the standby,
    /// another region's.
    pub fn on_cluster(&self, bootstrap_servers: &str) -> KafkaConfig {
        KafkaConfig { bootstrap_servers: bootstrap_servers.to_owned(), standby: None, ..self.clone() }
    }
}

/// librdkafka keys that have a typed home in this config.
const MANAGED_KAFKA_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("client.id", "kafka.client_id"),
    ("security.protocol", "kafka.security_protocol"),
    ("sasl.mechanism", "kafka.sasl.mechanism"),
    ("sasl.mechanisms", "kafka.sasl.mechanism"),
    ("sasl.username", "kafka.sasl.username"),
    ("sasl.password", "kafka.sasl.password"),
    ("ssl.ca.location", "kafka.tls.ca_location"),
    ("ssl.certificate.location", "kafka.tls.certificate_location"),
    ("ssl.key.location", "kafka.tls.key_location"),
    ("ssl.key.password", "kafka.tls.key_password"),
    ("acks", "kafka.producer.acks"),
    ("enable.idempotence", "kafka.producer.acks (idempotence follows acks = \"all\")"),
    ("queue.buffering.max.messages", "kafka.producer.buffer_max_messages"),
    ("linger.ms", "kafka.producer.linger"),
    ("message.timeout.ms", "kafka.producer.message_timeout"),
    ("enable.auto.offset.store", "nothing: slate stores offsets itself after effects are durable"),
    ("group.id", "enricher.group_id"),
    ("session.timeout.ms", "kafka.consumer.session_timeout"),
    ("max.poll.interval.ms", "kafka.consumer.max_poll_interval"),
    ("group.instance.id", "kafka.consumer.group_instance_id"),
    ("fetch.wait.max.ms", "kafka.consumer.fetch_wait_max"),
    ("partition.assignment.strategy", "kafka.consumer.assignment"),
];

impl KafkaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.split(',').any(|s| s.trim().is_empty()) {
            return Err(invalid(
                "kafka.bootstrap_servers",
                format!("'{}' has an empty entry; use a comma-separated host:port list such as \"127.0.0.1:9092\"", self.bootstrap_servers),
            ));
        }
        for key in self.properties.0.keys() {
            if let Some((_, home)) = MANAGED_KAFKA_KEYS.iter().find(|(k, _)| k == key) {
                return Err(invalid(&format!("kafka.properties.\"{key}\""), format!("is managed by slate; set {home} instead")));
            }
        }
        let wants_sasl = matches!(self.security_protocol, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl);
        match (&self.sasl, wants_sasl) {
            (None, true) => {
                return Err(invalid(
                    "kafka.sasl",
                    format!(
                        "security_protocol {:?} needs a [kafka.sasl] section with mechanism, username and password",
                        self.security_protocol
                    ),
                ));
            }
            (Some(_), false) => {
                return Err(invalid(
                    "kafka.security_protocol",
                    "[kafka.sasl] is set but security_protocol does not use SASL; set it to \"sasl_ssl\" (or \"sasl_plaintext\" on a trusted network)",
                ));
            }
            (Some(sasl), true) if sasl.username.is_empty() || sasl.password.is_empty() => {
                return Err(invalid("kafka.sasl", "username and password must both be non-empty"));
            }
            _ => {}
        }
        let uses_tls = matches!(self.security_protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
        if self.tls.is_some() && !uses_tls {
            return Err(invalid(
                "kafka.security_protocol",
                "[kafka.tls] is set but security_protocol does not use TLS; set it to \"ssl\" or \"sasl_ssl\"",
            ));
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("kafka.tls.ca_location", &tls.ca_location),
                ("kafka.tls.certificate_location", &tls.certificate_location),
                ("kafka.tls.key_location", &tls.key_location),
            ] {
                if let Some(path) = path
                    && !path.exists()
                {
                    return Err(invalid(key, format!("file '{}' does not exist", path.display())));
                }
            }
            if tls.certificate_location.is_some() != tls.key_location.is_some() {
                return Err(invalid("kafka.tls", "certificate_location and key_location go together (mutual TLS); set both or neither"));
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.consumer.session_timeout) {
            return Err(invalid(
                "kafka.consumer.session_timeout",
                "must be between 1s and 1h; brokers also bound it (group.min/max.session.timeout.ms)",
            ));
        }
        let c = &self.consumer;
        if c.max_poll_interval < c.session_timeout || c.max_poll_interval > Duration::from_secs(86_400) {
            return Err(invalid(
                "kafka.consumer.max_poll_interval",
                format!("must be at least kafka.consumer.session_timeout ({:?}) and at most 24h", c.session_timeout),
            ));
        }
        if self.consumer.group_instance_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(invalid("kafka.consumer.group_instance_id", "must not be empty; leave it unset for dynamic membership"));
        }
        if self.consumer.fetch_wait_max > Duration::from_secs(300) {
            return Err(invalid("kafka.consumer.fetch_wait_max", "must be at most 300s; a few hundred milliseconds at most is typical"));
        }
        if let Some(standby) = &self.standby {
            standby.validate(&self.bootstrap_servers, self.producer.message_timeout)?;
        }
        self.producer.validate()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle to verify the brokers; the system store when absent.
    pub ca_location: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// Verify the broker host name against its certificate. Only turn off for testing.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// "all" (default; enables the idempotent producer), "1" or "0".
    pub acks: Acks,
    /// Messages buffered in memory before `produce` reports the buffer full (counted, never dropped silently).
    pub buffer_max_messages: u32,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// How long a message may wait for a broker ack before it fails with a delivery error.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// How long a publish waits for space in a full buffer before it fails with an error.
    #[serde(with = "humantime_serde")]
    pub buffer_full_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            buffer_max_messages: 100_000,
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(30),
            buffer_full_timeout: Duration::from_secs(30),
        }
    }
}

impl ProducerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.buffer_max_messages == 0 || self.buffer_max_messages > 2_097_151 {
            return Err(invalid(
                "kafka.producer.buffer_max_messages",
                format!("{} is out of range; use 1..=2097151", self.buffer_max_messages),
            ));
        }
        if self.linger > Duration::from_secs(900) {
            return Err(invalid("kafka.producer.linger", "must be at most 900s; use a few milliseconds"));
        }
        if self.message_timeout < Duration::from_millis(1) {
            return Err(invalid("kafka.producer.message_timeout", "must be positive, e.g. \"30s\""));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Acks {
    #[serde(rename = "all")]
    All,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "0")]
    Zero,
}

impl<'de> Deserialize<'de> for Acks {
    /// Accepts "all", "1", "0" and, as librdkafka does, -1 / 1 / 0 (an env override of `1`
    /// arrives as an integer).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Int(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Str(s) if s == "all" || s == "-1" => Ok(Acks::All),
            Raw::Int(-1) => Ok(Acks::All),
            Raw::Str(s) if s == "1" => Ok(Acks::One),
            Raw::Int(1) => Ok(Acks::One),
            Raw::Str(s) if s == "0" => Ok(Acks::Zero),
            Raw::Int(0) => Ok(Acks::Zero),
            _ => Err(serde::de::Error::custom("acks must be \"all\", \"1\" or \"0\"")),
        }
    }
}

/// Extra librdkafka properties. Values of keys that look secret (password, secret, token,
/// key) are redacted in `Debug` and in `slate config show`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    fn shown(&self) -> BTreeMap<&str, &str> {
        let sensitive = |k: &str| ["password", "secret", "token", "key"].iter().any(|w| k.contains(w));
        self.0.iter().map(|(k, v)| (k.as_str(), if sensitive(k) { super::REDACTED } else { v.as_str() })).collect()
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(s)
    }
}

impl Acks {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::One => "1",
            Self::Zero => "0",
        }
    }
}

/// Client side of a Confluent-compatible schema registry (ours, Confluent SR, Karapace, Apicurio).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryClientConfig {
    pub url: String,
    /// How value subjects are named, as Confluent clients do: "topic" (`<topic>-value`),
    /// "record" (`<record full name>`) or "topic_record" (`<topic>-<record full name>`).
    pub subject_name_strategy: SubjectNameStrategy,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RegistryClientConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            subject_name_strategy: SubjectNameStrategy::Topic,
            basic_auth: None,
            bearer_token: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl RegistryClientConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        validate_http_url("registry.url", &self.url)?;
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            return Err(invalid("registry", "basic_auth and bearer_token are exclusive; keep the one your registry expects"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("registry.timeout", "must be positive, e.g. \"10s\""));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    Topic,
    Record,
    TopicRecord,
}

impl SubjectNameStrategy {
    /// The subject of a record value written to `topic`; `record` is the full name
    /// (`studio.finance.Production`).
    pub fn value_subject(self, topic: &str, record: &str) -> String {
        match self {
            Self::Topic => format!("{topic}-value"),
            Self::Record => record.to_string(),
            Self::TopicRecord => format!("{topic}-{record}"),
        }
    }
}

pub(super) fn validate_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(invalid(key, format!("'{url}' must be an http:// or https:// URL with a host"))),
        Err(e) => Err(invalid(key, format!("'{url}' is not a URL ({e}); use e.g. \"http://127.0.0.1:8081\""))),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

/// `slate registry`: the embedded Confluent-compatible registry server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryServerConfig {
    pub listen: SocketAddr,
    pub storage: RegistryStorage,
    /// Required when storage = "postgres".
    pub database_url: Option<SecretUrl>,
    /// Global compatibility level until changed with `PUT /config`.
    pub default_compatibility: String,
    /// When set, every request must carry these HTTP basic credentials.
    pub basic_auth: Option<BasicAuth>,
}

impl Default for RegistryServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            storage: RegistryStorage::Memory,
            database_url: None,
            default_compatibility: "BACKWARD".into(),
            basic_auth: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryStorage {
    Memory,
    Postgres,
}

impl RegistryServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.storage == RegistryStorage::Postgres && self.database_url.is_none() {
            return Err(invalid(
                "registry_server.database_url",
                "storage = \"postgres\" needs a database_url such as \"postgres://user:pass@127.0.0.1:5432/slate\"",
            ));
        }
        if self.default_compatibility.parse::<crate::registry::CompatibilityLevel>().is_err() {
            return Err(invalid(
                "registry_server.default_compatibility",
                format!(
                    "'{}' is not a level; use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE",
                    self.default_compatibility
                ),
            ));
        }
        Ok(())
    }
}
