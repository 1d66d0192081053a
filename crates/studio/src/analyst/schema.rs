//! The analyst GraphQL schema: read-only queries over the SQL sink's views and the audit tree.
//!
//! Limits (`[api]`): a query deeper than `max_depth` or costlier than `max_complexity` is refused
//! before anything runs, with a message naming the limit. Every field costs 1; a paginated field
//! costs its selection once per item asked for (`first`), `cashFlow`
//! [`MONTHS_COST`](super::model::MONTHS_COST) times its selection, `cashFlowByMonth`
//! [`CASH_FLOW_BY_MONTH_COST`] times. `first` above `max_page_size` is an error naming the
//! limit, never silently truncated.

use super::Store;
use super::history;
use super::model::{
    AuditEvent, CurrencyMonth, Entity, PageInfo, Production, ProductionConnection, ProductionEdge, ProductionFilter, page_cost,
};
use super::queries;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::Selection;
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, ID, Object, Result, Schema, ServerError, ValidationResult,
};
use std::sync::Arc;

pub type AnalystSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// What `cashFlowByMonth` costs per selected field: five years of months.
pub const CASH_FLOW_BY_MONTH_COST: usize = 60;
/// The depth limit of introspection-only queries (see [`is_introspection_only`]).
pub const INTROSPECTION_MAX_DEPTH: usize = 20;
/// Marks cursors of this API, so a cursor from elsewhere is refused instead of misread.
const CURSOR_PREFIX: &str = "production:";

pub(super) fn build(store: Arc<Store>, max_depth: usize, max_complexity: usize) -> AnalystSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(store)
        .limit_depth(max_depth)
        .limit_complexity(max_complexity)
        .extension(LimitMessages { max_depth, max_complexity })
        .finish()
}

/// Whether every operation of `query` selects only `__schema`, `__type` or `__typename` at its
/// top level. Such a query reads the in-memory schema, never the database, but GraphiQL's
/// introspection query nests `ofType` nine levels under `__schema { types { fields { type`,
/// deeper than `api.max_depth` is meant for data; the HTTP layer runs it on a schema whose depth
/// limit is [`INTROSPECTION_MAX_DEPTH`] (the complexity limit is the same). A query that does not
/// parse, or mixes in any data field or a top-level fragment, is not introspection-only.
pub fn is_introspection_only(query: &str) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(query) else { return false };
    document.operations.iter().all(|(_, operation)| {
        operation.node.selection_set.node.items.iter().all(|selection| match &selection.node {
            Selection::Field(field) => field.node.name.node.starts_with("__"),
            _ => false,
        })
    })
}

fn bad_request(message: String) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", "BAD_REQUEST"))
}

/// A database failure as a GraphQL error: UNAVAILABLE when retrying later may help.
pub(super) fn db_error(e: sqlx::Error) -> async_graphql::Error {
    let code = if super::db::is_transient(&e) { "UNAVAILABLE" } else { "INTERNAL" };
    async_graphql::Error::new(format!("database: {e}")).extend_with(|_, ext| ext.set("code", code))
}

/// `first` checked against 1..=`api.max_page_size`.
fn page_size(first: i32, store: &Store) -> Result<usize> {
    match usize::try_from(first) {
        Ok(n) if (1..=store.max_page_size).contains(&n) => Ok(n),
        _ => Err(bad_request(format!("first must be between 1 and {} (api.max_page_size), got {first}", store.max_page_size))),
    }
}

pub fn encode_cursor(id: &str) -> String {
    format!("{CURSOR_PREFIX}{id}").bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_cursor(cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len()).step_by(2).map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()?.strip_prefix(CURSOR_PREFIX).map(str::to_string)
}

/// `YYYY-MM` or `YYYY-MM-DD` → the first day of that month, `YYYY-MM-01`.
fn month_start(field: &str, value: &str) -> Result<String> {
    let candidate = if value.len() == 7 { format!("{value}-01") } else { value.to_string() };
    match crate::time::parse_date(&candidate) {
        Some(_) => Ok(format!("{}-01", &candidate[..7])),
        None => Err(bad_request(format!("{field} '{value}' is not a month as YYYY-MM (or a date as YYYY-MM-DD)"))),
    }
}

pub struct Query;

#[Object]
impl Query {
    /// Live productions with budget vs actuals, ordered by id. On PostgreSQL these numbers come
    /// from a materialized view the SQL sink refreshes every `sinks.sql.refresh_interval`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn productions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        status: Option<String>,
    ) -> Result<ProductionConnection> {
        page(ctx, ProductionFilter::All { status }, first, after).await
    }

    /// One live production; null if the id is unknown or deleted.
    async fn production(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Production>> {
        let store = ctx.data_unchecked::<Arc<Store>>();
        queries::production_by_id(&store.db, id.as_str()).await.map_err(db_error)
    }

    /// Productions whose committed spend (paid + pending) or projection exceeds the budget.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn over_budget(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<ProductionConnection> {
        page(ctx, ProductionFilter::OverBudget, first, after).await
    }

    /// Projected spend per month and currency, summed over every projection or one production's.
    /// `from` and `to` (`YYYY-MM` or a date in the month) bound the months, inclusive.
    #[graphql(complexity = "CASH_FLOW_BY_MONTH_COST * child_complexity")]
    async fn cash_flow_by_month(
        &self,
        ctx: &Context<'_>,
        production_id: Option<ID>,
        currency: Option<String>,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Vec<CurrencyMonth>> {
        let from = from.map(|f| month_start("from", &f)).transpose()?;
        let to = to.map(|t| month_start("to", &t)).transpose()?;
        let store = ctx.data_unchecked::<Arc<Store>>();
        queries::cash_flow_by_month(&store.db, production_id.map(|id| id.0), currency, from, to).await.map_err(db_error)
    }

    /// Every change event behind one entity id as the audit sink recorded it, newest first (by
    /// event time, then Kafka offset). Reads the entity's Parquet files: see `history.rs` for
    /// the cost.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn history(&self, ctx: &Context<'_>, entity: Entity, id: ID, #[graphql(default = 100)] first: i32) -> Result<Vec<AuditEvent>> {
        let store = ctx.data_unchecked::<Arc<Store>>();
        let first = page_size(first, store)?;
        let root = store.audit_dir.clone();
        tokio::task::spawn_blocking(move || history::read(&root, entity.into(), id.as_str(), first))
            .await
            .map_err(|e| async_graphql::Error::new(format!("history reader failed: {e}")))?
            .map_err(|e| async_graphql::Error::new(format!("audit tree: {e}")).extend_with(|_, ext| ext.set("code", "INTERNAL")))
    }
}

/// One page: `first + 1` rows tell whether another page follows; the nodes' cash flows are
/// fetched in one query when the selection asks for them.
async fn page(ctx: &Context<'_>, filter: ProductionFilter, first: i32, after: Option<String>) -> Result<ProductionConnection> {
    let store = ctx.data_unchecked::<Arc<Store>>();
    let first = page_size(first, store)?;
    let after = match after {
        Some(cursor) => Some(
            decode_cursor(&cursor)
                .ok_or_else(|| bad_request(format!("invalid cursor '{cursor}': pass the endCursor of a previous page")))?,
        ),
        None => None,
    };
    let mut nodes = queries::production_page(&store.db, &filter, after, first as i64 + 1).await.map_err(db_error)?;
    let has_next_page = nodes.len() > first;
    nodes.truncate(first);
    let look = ctx.look_ahead();
    if look.field("edges").field("node").field("cashFlow").exists() || look.field("nodes").field("cashFlow").exists() {
        let mut months = queries::cash_flows(&store.db, &nodes).await.map_err(db_error)?;
        for node in &mut nodes {
            node.prefetched_cash_flow = Some(months.remove(node.id.as_str()).unwrap_or_default());
        }
    }
    let edges: Vec<ProductionEdge> = nodes.into_iter().map(|node| ProductionEdge { cursor: encode_cursor(&node.id), node }).collect();
    let end_cursor = edges.last().map(|e| e.cursor.clone());
    Ok(ProductionConnection { edges, page_info: PageInfo { has_next_page, end_cursor }, filter })
}

/// Rewrites async-graphql's limit errors ("Query is nested too deep." / "Query is too
/// complex.") to name the limit and its config key. The texts are async-graphql's; a unit test
/// pins them so an upgrade that changes them fails here instead of silently dropping the hint.
struct LimitMessages {
    max_depth: usize,
    max_complexity: usize,
}

const DEPTH_ERROR: &str = "Query is nested too deep.";
const COMPLEXITY_ERROR: &str = "Query is too complex.";

impl ExtensionFactory for LimitMessages {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitMessages { max_depth: self.max_depth, max_complexity: self.max_complexity })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for LimitMessages {
    async fn validation(&self, ctx: &ExtensionContext<'_>, next: NextValidation<'_>) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|mut e| {
                    if e.message == DEPTH_ERROR {
                        e.message = format!("query is nested deeper than the depth limit of {} (api.max_depth)", self.max_depth);
                    } else if e.message == COMPLEXITY_ERROR {
                        e.message = format!(
                            "query exceeds the complexity limit of {} (api.max_complexity); ask for fewer items (first) or fewer fields",
                            self.max_complexity
                        );
                    }
                    e
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let c = encode_cursor("prod-00ü1");
        assert_eq!(decode_cursor(&c).as_deref(), Some("prod-00ü1"));
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
        assert_eq!(decode_cursor(&"other:x".bytes().map(|b| format!("{b:02x}")).collect::<String>()), None);
    }

    #[test]
    fn only_pure_introspection_gets_the_deeper_limit() {
        assert!(is_introspection_only("query IntrospectionQuery { __schema { types { fields { type { ofType { name } } } } } }"));
        assert!(is_introspection_only("{ __type(name: \"Production\") { name } __typename }"));
        assert!(!is_introspection_only("{ __schema { queryType { name } } productions { totalCount } }"));
        assert!(!is_introspection_only("{ ...F } fragment F on Query { __typename }"));
        assert!(!is_introspection_only("{ __schema "));
    }

    #[test]
    fn months_are_normalized() {
        assert_eq!(month_start("from", "2027-03").unwrap(), "2027-03-01");
        assert_eq!(month_start("to", "2027-03-31").unwrap(), "2027-03-01");
        assert!(month_start("to", "2027-13").is_err());
        assert!(month_start("to", "March").is_err());
    }

    /// The limit messages are async-graphql's own; this pins them (see [`LimitMessages`]).
    #[tokio::test]
    async fn async_graphql_limit_messages_are_the_ones_rewritten() {
        struct Q;
        #[Object]
        impl Q {
            async fn a(&self) -> Vec<Q> {
                Vec::new()
            }
            async fn b(&self) -> i32 {
                1
            }
        }
        let deep = Schema::build(Q, EmptyMutation, EmptySubscription).limit_depth(2).finish();
        let r = deep.execute("{ a { a { b } } }").await;
        assert_eq!(r.errors[0].message, DEPTH_ERROR);
        let costly = Schema::build(Q, EmptyMutation, EmptySubscription).limit_complexity(2).finish();
        let r = costly.execute("{ a { b } b c: b }").await;
        assert_eq!(r.errors[0].message, COMPLEXITY_ERROR);
    }
}
