//! The analyst API's output types. Money is integer minor units (cents) of the row's currency;
//! dates are `YYYY-MM-DD` (months `YYYY-MM-01`); timestamps RFC 3339 UTC.

use super::Store;
use super::queries;
use crate::event::EntityName;
use async_graphql::{ComplexObject, Context, Enum, ID, Object, Result, SimpleObject};
use std::sync::Arc;

/// What one item of `cashFlow` costs in query complexity: a projection spans about two years.
pub const MONTHS_COST: usize = 24;

/// Complexity of a paginated field: the selection under it, once per item asked for.
pub fn page_cost(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first).unwrap_or(0).max(1).saturating_mul(child_complexity)
}

/// A live production with its budget vs actuals (`budget_vs_actuals`).
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Production {
    pub id: ID,
    pub title: String,
    pub status: String,
    pub currency: String,
    /// Sum of the live budgets in the production's currency; null before any budget arrived.
    pub budget: Option<i64>,
    /// Sum of PAID payments in the production's currency.
    pub paid: i64,
    /// Sum of PENDING payments in the production's currency.
    pub pending: i64,
    /// Sum of the live cash-flow projections in the production's currency; null without one.
    pub projected: Option<i64>,
    /// budget - paid - pending; null without a budget.
    pub remaining: Option<i64>,
    /// The latest launch date of the production's schedules.
    pub launch_date: Option<String>,
    /// Whether the production is in `overBudget`: committed spend (paid + pending) or the
    /// projection exceeds the budget.
    pub over_budget: bool,
    /// paid + pending - budget (positive: over budget); null without a budget.
    pub committed_over_budget: Option<i64>,
    /// projected - budget (positive: over budget); null without a budget or a projection.
    pub projected_over_budget: Option<i64>,
    /// The months, when the page query fetched them for all its nodes at once.
    #[graphql(skip)]
    pub prefetched_cash_flow: Option<Vec<MonthAmount>>,
}

#[ComplexObject]
impl Production {
    /// The projection by month in the production's currency (projections in other currencies
    /// are left out, as in `projected`); `sum(amount) = projected`.
    #[graphql(complexity = "MONTHS_COST * child_complexity")]
    async fn cash_flow(&self, ctx: &Context<'_>) -> Result<Vec<MonthAmount>> {
        if let Some(months) = &self.prefetched_cash_flow {
            return Ok(months.clone());
        }
        let store = ctx.data_unchecked::<Arc<Store>>();
        let mut by_id = queries::cash_flows(&store.db, std::slice::from_ref(self)).await.map_err(super::schema::db_error)?;
        Ok(by_id.remove(self.id.as_str()).unwrap_or_default())
    }
}

/// One month of a projection.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct MonthAmount {
    /// `YYYY-MM-01`.
    pub month: String,
    pub amount: i64,
    /// Running total from the projection's first month.
    pub cumulative: i64,
}

/// One month of projected spend in one currency, summed over the selected projections.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct CurrencyMonth {
    pub currency: String,
    /// `YYYY-MM-01`.
    pub month: String,
    pub amount: i64,
    /// Running total in this currency from the first projected month (also when `from` leaves
    /// earlier months out).
    pub cumulative: i64,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` for the next page; null on an empty page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ProductionEdge {
    pub cursor: String,
    pub node: Production,
}

/// Which rows a production page is cut from (also what `totalCount` counts).
#[derive(Clone, Debug)]
pub enum ProductionFilter {
    All { status: Option<String> },
    OverBudget,
}

/// A page of productions ordered by id (keyset pagination: pages stay consistent while rows are
/// added, and a page costs an index range scan, never an OFFSET).
pub struct ProductionConnection {
    pub edges: Vec<ProductionEdge>,
    pub page_info: PageInfo,
    pub filter: ProductionFilter,
}

#[Object]
impl ProductionConnection {
    async fn edges(&self) -> &Vec<ProductionEdge> {
        &self.edges
    }

    async fn nodes(&self) -> Vec<&Production> {
        self.edges.iter().map(|e| &e.node).collect()
    }

    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }

    /// Rows matching the filter across all pages (a separate COUNT query, run only if asked).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let store = ctx.data_unchecked::<Arc<Store>>();
        queries::count_productions(&store.db, &self.filter).await.map_err(super::schema::db_error)
    }
}

/// The six entities whose history the audit sink keeps.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Entity {
    Production,
    Talent,
    Schedule,
    Budget,
    CashFlow,
    Payment,
}

impl From<Entity> for EntityName {
    fn from(e: Entity) -> EntityName {
        match e {
            Entity::Production => crate::studio::kind::PRODUCTION,
            Entity::Talent => crate::studio::kind::TALENT,
            Entity::Schedule => crate::studio::kind::SCHEDULE,
            Entity::Budget => crate::studio::kind::BUDGET,
            Entity::CashFlow => crate::studio::kind::CASH_FLOW,
            Entity::Payment => crate::studio::kind::PAYMENT,
        }
    }
}

/// One audit row: one change event behind one enriched record, as the audit sink wrote it.
#[derive(SimpleObject, Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub event_uuid: String,
    /// CREATE, UPDATE or DELETE.
    pub change_type: String,
    /// When the change happened at the source (RFC 3339, UTC, milliseconds).
    pub event_ts: String,
    /// The source-of-truth version of the record; null for an unversioned tombstone.
    pub source_version: Option<i64>,
    pub deleted: bool,
    /// The enriched record as JSON; null for a tombstone.
    pub payload: Option<String>,
    pub kafka_topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}
