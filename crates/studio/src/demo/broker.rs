//! The demo's broker: librdkafka's in-process mock cluster, a Kafka-protocol broker living
//! inside this process (no JVM, no container). It speaks the protocol to every slate client as a
//! real broker would — produce, fetch, consumer groups, offset commits, idempotent producers —
//! but keeps everything in memory, has no CreateTopics API (topics are created here, directly)
//! and is gone when the process exits. For the demo only; librdkafka marks it experimental.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    pub fn start() -> Result<Self, KafkaError> {
        Ok(Self { cluster: MockCluster::new(1)? })
    }

    /// `host:port` for `kafka.bootstrap_servers` (loopback only).
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topics(&self, topics: &[String], partitions: i32) -> Result<(), KafkaError> {
        for t in topics {
            self.cluster.create_topic(t, partitions, 1)?;
        }
        Ok(())
    }
}
