//! Kafka client configuration (security passed through to librdkafka) and the producer wrapper.
//!
//! Every client slate creates starts from [`base_config`], so TLS, SASL and the user's extra
//! librdkafka properties apply to producers, consumers and admin clients alike.

pub mod capacity;
pub mod group;
mod keys;
mod producer;
pub mod stall;
pub mod tail;
mod tracker;
mod transaction;

pub use keys::live_keys;
pub use producer::{DeliveryFuture, ProduceError, Producer};
pub use tracker::OffsetTracker;
pub use transaction::{Transactions, Txn, TxnError, TxnInitError};

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Connection and security settings shared by every client.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("client.id", &cfg.client_id)
        .set("security.protocol", cfg.security_protocol.as_librdkafka());
    if let Some(sasl) = &cfg.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_librdkafka())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    if let Some(tls) = &cfg.tls {
        if let Some(p) = &tls.ca_location {
            c.set("ssl.ca.location", p.display().to_string());
        }
        if let Some(p) = &tls.certificate_location {
            c.set("ssl.certificate.location", p.display().to_string());
        }
        if let Some(p) = &tls.key_location {
            c.set("ssl.key.location", p.display().to_string());
        }
        if let Some(p) = &tls.key_password {
            c.set("ssl.key.password", p.expose());
        }
        c.set("ssl.endpoint.identification.algorithm", if tls.verify_hostname { "https" } else { "none" });
    }
    for (k, v) in &cfg.properties.0 {
        c.set(k, v);
    }
    c
}

/// Producer settings: `acks` as configured; the idempotent producer whenever `acks = "all"`
/// (librdkafka requires it), so broker-side retries never duplicate or reorder a partition.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(cfg);
    let p = &cfg.producer;
    c.set("acks", p.acks.as_librdkafka())
        .set("enable.idempotence", if p.acks == crate::config::Acks::All { "true" } else { "false" })
        .set("queue.buffering.max.messages", p.buffer_max_messages.to_string())
        .set("linger.ms", p.linger.as_millis().to_string())
        .set("message.timeout.ms", p.message_timeout.as_millis().to_string());
    c
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
///
/// Topics the cluster already lists are left alone and never asked for, so this works where the
/// principal lacks the CreateTopics ACL (topics managed by ops) and on brokers without the
/// CreateTopics API (librdkafka's mock cluster, which the demo runs on).
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[String], partitions: i32, replication: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = base_config(cfg).create()?;
    // Metadata requests block; librdkafka's own timeout bounds this one.
    let (admin, metadata) = tokio::task::spawn_blocking(move || {
        let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(30));
        (admin, metadata)
    })
    .await
    .expect("metadata task does not panic");
    let existing: std::collections::HashSet<String> = metadata?.topics().iter().map(|t| t.name().to_string()).collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .filter(|t| !existing.contains(t.as_str()))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::warn!(%topic, ?code, "topic creation failed"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Override};

    fn ov(key: &str, value: &str) -> Override {
        Override { key: key.into(), value: value.into(), origin: "test".into() }
    }

    #[test]
    fn security_settings_reach_librdkafka() {
        let mut cfg = Config::load(
            None,
            &[
                ov("kafka.security_protocol", "sasl_ssl"),
                ov("kafka.sasl.mechanism", "SCRAM-SHA-512"),
                ov("kafka.sasl.username", "svc"),
                ov("kafka.sasl.password", "s3cret"),
                ov("kafka.tls.verify_hostname", "false"),
            ],
        )
        .unwrap();
        cfg.kafka.properties.0.insert("socket.keepalive.enable".into(), "true".into());
        let c = producer_config(&cfg.kafka);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn idempotence_follows_acks() {
        let cfg = Config::load(None, &[ov("kafka.producer.acks", "1")]).unwrap();
        let c = producer_config(&cfg.kafka);
        assert_eq!((c.get("acks"), c.get("enable.idempotence")), (Some("1"), Some("false")));
    }
}
