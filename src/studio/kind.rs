//! The studio's six entities, by name. They are the example catalogue's entities; the
//! platform never names them (the built-in catalogue registers them from their records).

use crate::catalogue::EntityName;

pub const PRODUCTION: EntityName = EntityName::from_static("production");
pub const TALENT: EntityName = EntityName::from_static("talent");
pub const SCHEDULE: EntityName = EntityName::from_static("schedule");
pub const BUDGET: EntityName = EntityName::from_static("budget");
pub const CASH_FLOW: EntityName = EntityName::from_static("cash_flow");
pub const PAYMENT: EntityName = EntityName::from_static("payment");

pub const ALL: [EntityName; 6] = [PRODUCTION, TALENT, SCHEDULE, BUDGET, CASH_FLOW, PAYMENT];

/// Whether the studio serves `kind`.
pub fn is_studio(kind: EntityName) -> bool {
    ALL.contains(&kind)
}
