//! The studio's GraphQL API: batched reads taking `ids: [ID!]!`, listings, and the mutations
//! that publish change events. Field names are snake_case and match the Avro records, so a
//! response maps onto `schemas/avro/` by name; dates are `YYYY-MM-DD`; money is minor units.

use super::kind;
use super::model::{self, Body};
use super::store::{Change, NewProduction, StudioError};
use super::{ReadError, Studio};
use crate::event::EntityName;
use async_graphql::{Context, EmptySubscription, Enum, ErrorExtensions, ID, InputObject, Object, Result, Schema, SimpleObject};
use std::sync::Arc;

pub type StudioSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn schema(studio: Arc<Studio>) -> StudioSchema {
    Schema::build(Query, Mutation, EmptySubscription).data(studio).limit_depth(8).limit_complexity(20_000).finish()
}

fn studio<'a>(ctx: &Context<'a>) -> &'a Arc<Studio> {
    ctx.data_unchecked::<Arc<Studio>>()
}

fn read_error(e: ReadError) -> async_graphql::Error {
    let code = match e {
        ReadError::Fault(super::faults::Fault::Error) => "UNAVAILABLE",
        ReadError::Fault(super::faults::Fault::Timeout) => "TIMEOUT",
        ReadError::TooMany(_) => "BAD_REQUEST",
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", code))
}

fn studio_error(e: StudioError) -> async_graphql::Error {
    let code = match e {
        StudioError::NotFound { .. } => "NOT_FOUND",
        StudioError::Invalid { .. } => "BAD_REQUEST",
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", code))
}

fn parse_date(field: &str, s: &str) -> Result<i32> {
    model::parse_date(s).ok_or_else(|| async_graphql::Error::new(format!("invalid {field}: '{s}' is not a date as YYYY-MM-DD")))
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Production {
    id: ID,
    version: i64,
    title: String,
    status: String,
    genre: String,
    currency: String,
    budget_id: Option<String>,
    schedule_id: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Deal {
    production_id: String,
    fee: i64,
    currency: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Talent {
    id: ID,
    version: i64,
    name: String,
    role: String,
    deals: Vec<Deal>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Schedule {
    id: ID,
    version: i64,
    production_id: String,
    start_date: String,
    launch_date: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct BudgetLine {
    category: String,
    amount: i64,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Budget {
    id: ID,
    version: i64,
    production_id: String,
    currency: String,
    lines: Vec<BudgetLine>,
    total: i64,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct CashFlowMonth {
    month: String,
    amount: i64,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct CashFlow {
    id: ID,
    version: i64,
    production_id: String,
    currency: String,
    months: Vec<CashFlowMonth>,
    total: i64,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Payment {
    id: ID,
    version: i64,
    production_id: String,
    talent_id: String,
    amount: i64,
    currency: String,
    status: String,
    due_date: String,
}

/// A deleted entity: its id and the version of the delete.
#[derive(SimpleObject)]
pub struct Tombstone {
    id: ID,
    version: i64,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "snake_case")]
pub enum Entity {
    Production,
    Talent,
    Schedule,
    Budget,
    CashFlow,
    Payment,
}

impl From<Entity> for EntityName {
    fn from(e: Entity) -> Self {
        match e {
            Entity::Production => kind::PRODUCTION,
            Entity::Talent => kind::TALENT,
            Entity::Schedule => kind::SCHEDULE,
            Entity::Budget => kind::BUDGET,
            Entity::CashFlow => kind::CASH_FLOW,
            Entity::Payment => kind::PAYMENT,
        }
    }
}

/// One entity touched by a mutation, with its new version.
#[derive(SimpleObject)]
pub struct ChangeInfo {
    entity: String,
    id: ID,
    #[graphql(name = "type")]
    change_type: String,
    version: i64,
}

#[derive(SimpleObject)]
pub struct MutationResult {
    /// Id of the created entity, or of the entity changed.
    id: ID,
    /// Every entity the mutation touched; one change event was published for each.
    changes: Vec<ChangeInfo>,
}

fn ids_to_strings(ids: Vec<ID>) -> Vec<String> {
    ids.into_iter().map(|i| i.0).collect()
}

async fn batch(ctx: &Context<'_>, kind: EntityName, ids: Vec<ID>) -> Result<Vec<(String, i64, Body)>> {
    let read = studio(ctx).read("graphql", kind, &ids_to_strings(ids)).await.map_err(read_error)?;
    Ok(read.found)
}

pub struct Query;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl Query {
    /// Current state of the given productions; unknown or deleted ids are omitted (see `tombstones`).
    async fn productions(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Production>> {
        Ok(batch(ctx, kind::PRODUCTION, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::Production(p) => Some(Production {
                    id: id.into(),
                    version,
                    title: p.title,
                    status: p.status,
                    genre: p.genre,
                    currency: p.currency,
                    budget_id: p.budget_id,
                    schedule_id: p.schedule_id,
                }),
                _ => None,
            })
            .collect())
    }

    async fn talents(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Talent>> {
        Ok(batch(ctx, kind::TALENT, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::Talent(t) => Some(Talent {
                    id: id.into(),
                    version,
                    name: t.name,
                    role: t.role,
                    deals: t.deals.into_iter().map(|d| Deal { production_id: d.production_id, fee: d.fee, currency: d.currency }).collect(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn schedules(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Schedule>> {
        Ok(batch(ctx, kind::SCHEDULE, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::Schedule(s) => Some(Schedule {
                    id: id.into(),
                    version,
                    production_id: s.production_id,
                    start_date: model::format_date(s.start_date),
                    launch_date: model::format_date(s.launch_date),
                }),
                _ => None,
            })
            .collect())
    }

    async fn budgets(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Budget>> {
        Ok(batch(ctx, kind::BUDGET, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::Budget(b) => Some(Budget {
                    id: id.into(),
                    version,
                    total: b.total(),
                    production_id: b.production_id,
                    currency: b.currency,
                    lines: b.lines.into_iter().map(|l| BudgetLine { category: l.category, amount: l.amount }).collect(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn cash_flows(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<CashFlow>> {
        Ok(batch(ctx, kind::CASH_FLOW, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::CashFlow(c) => Some(CashFlow {
                    id: id.into(),
                    version,
                    total: c.total(),
                    production_id: c.production_id,
                    currency: c.currency,
                    months: c.months.into_iter().map(|m| CashFlowMonth { month: m.month, amount: m.amount }).collect(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn payments(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Payment>> {
        Ok(batch(ctx, kind::PAYMENT, ids)
            .await?
            .into_iter()
            .filter_map(|(id, version, b)| match b {
                Body::Payment(p) => Some(Payment {
                    id: id.into(),
                    version,
                    production_id: p.production_id,
                    talent_id: p.talent_id,
                    amount: p.amount,
                    currency: p.currency,
                    status: p.status,
                    due_date: model::format_date(p.due_date),
                }),
                _ => None,
            })
            .collect())
    }

    /// Deleted entities among `ids`, with the version of each delete.
    async fn tombstones(&self, ctx: &Context<'_>, entity: Entity, ids: Vec<ID>) -> Result<Vec<Tombstone>> {
        let read = studio(ctx).read("graphql", entity.into(), &ids_to_strings(ids)).await.map_err(read_error)?;
        Ok(read.deleted.into_iter().map(|(id, version)| Tombstone { id: id.into(), version }).collect())
    }

    /// Ids of live entities in ascending order, for paging through everything (`slate verify`).
    async fn ids(&self, ctx: &Context<'_>, entity: Entity, after: Option<ID>, #[graphql(default = 100)] first: i32) -> Result<Vec<ID>> {
        let first = usize::try_from(first)
            .ok()
            .filter(|n| (1..=super::MAX_IDS_PER_READ).contains(n))
            .ok_or_else(|| async_graphql::Error::new(format!("first must be in 1..={}", super::MAX_IDS_PER_READ)))?;
        Ok(studio(ctx).store.list_ids(entity.into(), after.as_ref().map(|a| a.as_str()), first).into_iter().map(ID).collect())
    }
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub struct BudgetLineInput {
    category: String,
    amount: i64,
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub struct NewProductionInput {
    title: String,
    genre: String,
    currency: String,
    start_date: String,
    launch_date: String,
    #[graphql(default)]
    lines: Vec<BudgetLineInput>,
}

async fn publish(ctx: &Context<'_>, id: String, changes: Result<Vec<Change>, StudioError>) -> Result<MutationResult> {
    let changes = changes.map_err(studio_error)?;
    studio(ctx).publish(&changes).await.map_err(|e| {
        async_graphql::Error::new(format!("change applied but its events were not published: {e}"))
            .extend_with(|_, ext| ext.set("code", "PUBLISH_FAILED"))
    })?;
    Ok(MutationResult {
        id: id.into(),
        changes: changes
            .into_iter()
            .map(|c| ChangeInfo {
                entity: c.entity.to_string(),
                id: c.id.into(),
                change_type: c.change_type.as_str().into(),
                version: c.version,
            })
            .collect(),
    })
}

pub struct Mutation;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl Mutation {
    /// Creates a production with its budget, schedule and cash-flow projection.
    async fn create_production(&self, ctx: &Context<'_>, input: NewProductionInput) -> Result<MutationResult> {
        let new = NewProduction {
            title: input.title,
            genre: input.genre,
            currency: input.currency,
            start_date: parse_date("start_date", &input.start_date)?,
            launch_date: parse_date("launch_date", &input.launch_date)?,
            lines: input.lines.into_iter().map(|l| model::BudgetLine { category: l.category, amount: l.amount }).collect(),
        };
        match studio(ctx).store.create_production(new) {
            Ok((id, changes)) => publish(ctx, id, Ok(changes)).await,
            Err(e) => Err(studio_error(e)),
        }
    }

    async fn update_production(&self, ctx: &Context<'_>, id: ID, title: Option<String>, status: Option<String>) -> Result<MutationResult> {
        let changes = studio(ctx).store.update_production(&id, title, status);
        publish(ctx, id.0, changes).await
    }

    async fn delete_production(&self, ctx: &Context<'_>, id: ID) -> Result<MutationResult> {
        let changes = studio(ctx).store.delete_production(&id);
        publish(ctx, id.0, changes).await
    }

    /// Moves a production's dates; its cash-flow projection moves too.
    async fn reschedule(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        start_date: Option<String>,
        launch_date: Option<String>,
    ) -> Result<MutationResult> {
        let start = start_date.map(|s| parse_date("start_date", &s)).transpose()?;
        let launch = launch_date.map(|s| parse_date("launch_date", &s)).transpose()?;
        let changes = studio(ctx).store.reschedule(&schedule_id, start, launch);
        publish(ctx, schedule_id.0, changes).await
    }

    async fn set_budget_line(&self, ctx: &Context<'_>, budget_id: ID, category: String, amount: i64) -> Result<MutationResult> {
        let changes = studio(ctx).store.set_budget_line(&budget_id, &category, amount);
        publish(ctx, budget_id.0, changes).await
    }

    async fn create_talent(&self, ctx: &Context<'_>, name: String, role: String) -> Result<MutationResult> {
        match studio(ctx).store.create_talent(&name, &role) {
            Ok((id, changes)) => publish(ctx, id, Ok(changes)).await,
            Err(e) => Err(studio_error(e)),
        }
    }

    async fn set_deal(&self, ctx: &Context<'_>, talent_id: ID, production_id: ID, fee: i64) -> Result<MutationResult> {
        let changes = studio(ctx).store.set_deal(&talent_id, &production_id, fee);
        publish(ctx, talent_id.0, changes).await
    }

    async fn delete_talent(&self, ctx: &Context<'_>, id: ID) -> Result<MutationResult> {
        let changes = studio(ctx).store.delete_talent(&id);
        publish(ctx, id.0, changes).await
    }

    async fn create_payment(
        &self,
        ctx: &Context<'_>,
        production_id: ID,
        talent_id: ID,
        amount: i64,
        due_date: String,
    ) -> Result<MutationResult> {
        let due = parse_date("due_date", &due_date)?;
        match studio(ctx).store.create_payment(&production_id, &talent_id, amount, due) {
            Ok((id, changes)) => publish(ctx, id, Ok(changes)).await,
            Err(e) => Err(studio_error(e)),
        }
    }

    async fn set_payment_status(&self, ctx: &Context<'_>, id: ID, status: String) -> Result<MutationResult> {
        let changes = studio(ctx).store.set_payment_status(&id, &status);
        publish(ctx, id.0, changes).await
    }

    async fn delete_payment(&self, ctx: &Context<'_>, id: ID) -> Result<MutationResult> {
        let changes = studio(ctx).store.delete_payment(&id);
        publish(ctx, id.0, changes).await
    }
}
