//! The SQL behind the analyst API: one text per query for PostgreSQL and SQLite (see `db.rs` for
//! the portability rules), and the mapping of rows into the API's types.
//!
//! Staleness: on PostgreSQL `budget_vs_actuals` (and `over_budget_productions`, a filter over it)
//! is a materialized view the SQL sink refreshes every `sinks.sql.refresh_interval`, so
//! production numbers lag the sink's tables by up to that interval; `cash_flow_by_month` is a
//! plain view and always current. On SQLite every view is current.

use super::db::{Bind, Columns, Db};
use super::model::{CurrencyMonth, MonthAmount, Production, ProductionFilter};
use async_graphql::ID;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

/// Every column of a [`Production`], from `budget_vs_actuals` joined with its over-budget filter.
const SELECT_PRODUCTION: &str = "SELECT b.production_id AS id, b.title, b.status, b.currency, \
     CAST(b.budget AS BIGINT) AS budget, CAST(b.paid AS BIGINT) AS paid, CAST(b.pending AS BIGINT) AS pending, \
     CAST(b.projected AS BIGINT) AS projected, CAST(b.remaining AS BIGINT) AS remaining, \
     CAST(b.launch_date AS TEXT) AS launch_date, \
     CAST(CASE WHEN o.production_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS over_budget, \
     CAST(b.paid + b.pending - b.budget AS BIGINT) AS committed_over_budget, \
     CAST(b.projected - b.budget AS BIGINT) AS projected_over_budget \
     FROM budget_vs_actuals b LEFT JOIN over_budget_productions o ON o.production_id = b.production_id";

/// $1 status (NULL: any), $2 over budget only (0/1).
const FILTER: &str = "($1 IS NULL OR b.status = $1) AND ($2 = 0 OR o.production_id IS NOT NULL)";

fn production(r: &dyn Columns) -> Result<Production, sqlx::Error> {
    Ok(Production {
        id: ID(r.required_text("id")?),
        title: r.text("title")?.unwrap_or_default(),
        status: r.text("status")?.unwrap_or_default(),
        currency: r.text("currency")?.unwrap_or_default(),
        budget: r.int("budget")?,
        paid: r.required_int("paid")?,
        pending: r.required_int("pending")?,
        projected: r.int("projected")?,
        remaining: r.int("remaining")?,
        launch_date: r.text("launch_date")?,
        over_budget: r.required_int("over_budget")? != 0,
        committed_over_budget: r.int("committed_over_budget")?,
        projected_over_budget: r.int("projected_over_budget")?,
        prefetched_cash_flow: None,
    })
}

fn filter_binds(filter: &ProductionFilter) -> [Bind; 2] {
    match filter {
        ProductionFilter::All { status } => [Bind::Text(status.clone()), Bind::Int(0)],
        ProductionFilter::OverBudget => [Bind::Text(None), Bind::Int(1)],
    }
}

/// Up to `limit` productions matching `filter` with an id after `after`, by id.
pub async fn production_page(
    db: &Db,
    filter: &ProductionFilter,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<Production>, sqlx::Error> {
    // Composed from constants only: no caller value ever reaches the SQL text.
    let sql = format!("{SELECT_PRODUCTION} WHERE {FILTER} AND ($3 IS NULL OR b.production_id > $3) ORDER BY b.production_id LIMIT $4");
    let [status, over] = filter_binds(filter);
    db.fetch(AssertSqlSafe(sql), &[status, over, Bind::Text(after), Bind::Int(limit)], production).await
}

pub async fn production_by_id(db: &Db, id: &str) -> Result<Option<Production>, sqlx::Error> {
    let sql = format!("{SELECT_PRODUCTION} WHERE b.production_id = $1");
    Ok(db.fetch(AssertSqlSafe(sql), &[Bind::Text(Some(id.to_string()))], production).await?.pop())
}

pub async fn count_productions(db: &Db, filter: &ProductionFilter) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT CAST(count(*) AS BIGINT) AS n FROM budget_vs_actuals b \
         LEFT JOIN over_budget_productions o ON o.production_id = b.production_id WHERE {FILTER}"
    );
    let rows = db.fetch(AssertSqlSafe(sql), &filter_binds(filter), |r| r.required_int("n")).await?;
    Ok(rows.into_iter().next().unwrap_or(0))
}

/// (production_id, currency, month, amount) of `cash_flow_by_month`, summed per month.
type MonthRow = (String, String, String, i64);

fn month_row(r: &dyn Columns) -> Result<MonthRow, sqlx::Error> {
    Ok((r.required_text("production_id")?, r.required_text("currency")?, r.required_text("month")?, r.required_int("amount")?))
}

/// The cash flow by month of each production, in its own currency, keyed by production id: one
/// query for a whole page (an `IN` list of the page's ids), never one per node.
pub async fn cash_flows(db: &Db, productions: &[Production]) -> Result<HashMap<String, Vec<MonthAmount>>, sqlx::Error> {
    if productions.is_empty() {
        return Ok(HashMap::new());
    }
    // Only placeholders are generated; the ids travel as bound parameters.
    let placeholders: Vec<String> = (1..=productions.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT production_id, currency, CAST(month AS TEXT) AS month, CAST(sum(amount) AS BIGINT) AS amount \
         FROM cash_flow_by_month WHERE production_id IN ({}) \
         GROUP BY production_id, currency, month ORDER BY production_id, currency, month",
        placeholders.join(", ")
    );
    let binds: Vec<Bind> = productions.iter().map(|p| Bind::Text(Some(p.id.to_string()))).collect();
    let rows = db.fetch(AssertSqlSafe(sql), &binds, month_row).await?;
    let currency_of: HashMap<&str, &str> = productions.iter().map(|p| (p.id.as_str(), p.currency.as_str())).collect();
    let mut out: HashMap<String, Vec<MonthAmount>> = productions.iter().map(|p| (p.id.to_string(), Vec::new())).collect();
    for (production_id, currency, month, amount) in rows {
        if currency_of.get(production_id.as_str()) != Some(&currency.as_str()) {
            continue;
        }
        let months = out.entry(production_id).or_default();
        let cumulative = months.last().map_or(0, |m| m.cumulative) + amount;
        months.push(MonthAmount { month, amount, cumulative });
    }
    Ok(out)
}

/// Projected spend per (currency, month) over every projection, or one production's.
/// `from`/`to` are `YYYY-MM-01` bounds, inclusive; the running total starts at the first
/// projected month whatever `from` is, so it is filtered after summing.
pub async fn cash_flow_by_month(
    db: &Db,
    production_id: Option<String>,
    currency: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<Vec<CurrencyMonth>, sqlx::Error> {
    const SQL: &str = "SELECT currency, CAST(month AS TEXT) AS month, CAST(sum(amount) AS BIGINT) AS amount \
         FROM cash_flow_by_month \
         WHERE ($1 IS NULL OR production_id = $1) AND ($2 IS NULL OR currency = $2) AND ($3 IS NULL OR CAST(month AS TEXT) <= $3) \
         GROUP BY currency, month ORDER BY currency, month";
    let rows = db
        .fetch(SQL, &[Bind::Text(production_id), Bind::Text(currency), Bind::Text(to)], |r| {
            Ok((r.required_text("currency")?, r.required_text("month")?, r.required_int("amount")?))
        })
        .await?;
    Ok(running_totals(rows).into_iter().filter(|m| from.as_deref().is_none_or(|f| m.month.as_str() >= f)).collect())
}

/// Adds the running total per currency to (currency, month, amount) rows ordered by both.
fn running_totals(rows: Vec<(String, String, i64)>) -> Vec<CurrencyMonth> {
    let mut out: Vec<CurrencyMonth> = Vec::with_capacity(rows.len());
    for (currency, month, amount) in rows {
        let before = out.last().filter(|m| m.currency == currency).map_or(0, |m| m.cumulative);
        out.push(CurrencyMonth { currency, month, amount, cumulative: before + amount });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_totals_restart_per_currency() {
        let rows = vec![
            ("EUR".to_string(), "2027-01-01".to_string(), 5),
            ("USD".to_string(), "2027-01-01".to_string(), 10),
            ("USD".to_string(), "2027-02-01".to_string(), 20),
        ];
        let totals: Vec<(String, i64)> = running_totals(rows).into_iter().map(|m| (m.currency, m.cumulative)).collect();
        assert_eq!(totals, vec![("EUR".into(), 5), ("USD".into(), 10), ("USD".into(), 30)]);
    }
}
