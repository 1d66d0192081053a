//! The studio's six entities, by name: the example catalogue's entities, which the studio serves.

use crate::catalogue::EntityName;
pub use crate::catalogue::example::{ALL, BUDGET, CASH_FLOW, PAYMENT, PRODUCTION, SCHEDULE, TALENT};

/// Whether the studio serves `kind`.
pub fn is_studio(kind: EntityName) -> bool {
    ALL.contains(&kind)
}
