//! The built-in example catalogue's entity names (the studio's six records). The platform never
//! names them outside its own unit tests, which use them as ready-made fixtures; the demo
//! studio, the analyst views and the bench are the example's users.

use super::EntityName;

pub const PRODUCTION: EntityName = EntityName::from_static("production");
pub const TALENT: EntityName = EntityName::from_static("talent");
pub const SCHEDULE: EntityName = EntityName::from_static("schedule");
pub const BUDGET: EntityName = EntityName::from_static("budget");
pub const CASH_FLOW: EntityName = EntityName::from_static("cash_flow");
pub const PAYMENT: EntityName = EntityName::from_static("payment");

pub const ALL: [EntityName; 6] = [PRODUCTION, TALENT, SCHEDULE, BUDGET, CASH_FLOW, PAYMENT];
