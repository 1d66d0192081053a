//! Sinks: independent consumers of the enriched topics, each in its own consumer group and at
//! its own pace, writing idempotently to a target.
//!
//! Contract of the shared loop (`runner.rs`): consume a batch, decode it, write it, and only then
//! store its offsets. A target that is down or slow ([`SinkError::Unavailable`]) pauses the sink
//! with backoff and the same batch is written again: nothing is skipped. A record the target
//! rejects permanently goes to the dead-letter topic with the reason, and is counted. Every
//! [`Sink`] is idempotent by entity id + source version, so replays, duplicates and reordering
//! converge to the source of truth. An entity the target cannot follow (an incompatible schema
//! change) is *halted*: its partitions are paused and left uncommitted, `/health` names the
//! field and the fix, and the other entities go on; a restart after the fix resumes it.

pub mod audit;
mod codec;
pub mod record;
pub mod runner;
pub mod search;
pub mod sql;

pub use record::SinkRecord;

use crate::catalogue::EntityName;
use std::future::Future;
use std::pin::Pin;

/// What a write did with a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Records applied (newer than what the target held).
    pub applied: usize,
    /// Records skipped because the target already held that version or a newer one.
    pub stale: usize,
    /// Records the target refused for good: (index in the batch, reason).
    pub rejected: Vec<(usize, String)>,
    /// Entities the target cannot take until a human acts (a schema change the target's tables
    /// or mappings cannot follow), with the reason naming the field and the fix. Records of these
    /// entities were not written and must not be committed; the rest of the batch was written.
    pub halted: Vec<(EntityName, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Transient: the target is down, slow or overloaded; the batch is retried.
    #[error("target unavailable: {0}")]
    Unavailable(String),
    /// The sink cannot work at all (bad credentials, schema mismatch): it stops with this error.
    #[error("sink failed: {0}")]
    Fatal(String),
}

impl SinkError {
    /// Prefixes the message with `what` (e.g. the entity or migration it concerns), keeping the
    /// classification: a transient failure stays retriable whatever step it interrupted.
    pub fn context(self, what: impl std::fmt::Display) -> SinkError {
        match self {
            SinkError::Unavailable(m) => SinkError::Unavailable(format!("{what}: {m}")),
            SinkError::Fatal(m) => SinkError::Fatal(format!("{what}: {m}")),
        }
    }
}

/// A target. The seam a test fakes; the real ones are `sql`, `search` and `audit`.
pub trait Sink: Send + Sync {
    /// Short name: the consumer group suffix and the `sink` metric label.
    fn name(&self) -> &'static str;

    /// Writes a batch idempotently. `Ok` means every applied record is durable in the target.
    fn write<'a>(&'a self, batch: &'a [SinkRecord]) -> Pin<Box<dyn Future<Output = Result<WriteOutcome, SinkError>> + Send + 'a>>;
}
