//! The studio's finance entities (mirroring `schemas/avro/`), and the derived cash-flow projection.
//!
//! Dates are days since 1970-01-01 (Avro `date`); money is minor units (cents) as i64.

use super::kind;
use crate::event::EntityName;
pub use crate::time::{civil_from_days, days_from_civil, format_date, parse_date};

#[derive(Debug, Clone, PartialEq)]
pub struct Production {
    pub title: String,
    pub status: String,
    pub genre: String,
    pub currency: String,
    pub budget_id: Option<String>,
    pub schedule_id: Option<String>,
}

pub const PRODUCTION_STATUSES: &[&str] =
    &["DEVELOPMENT", "PRE_PRODUCTION", "PRINCIPAL_PHOTOGRAPHY", "POST_PRODUCTION", "RELEASED", "CANCELLED"];
pub const TALENT_ROLES: &[&str] = &["ACTOR", "DIRECTOR", "WRITER", "PRODUCER", "COMPOSER", "CREW"];
pub const PAYMENT_STATUSES: &[&str] = &["PENDING", "PAID", "VOID"];
pub const BUDGET_CATEGORIES: &[&str] = &["ABOVE_THE_LINE", "PRODUCTION", "POST", "MARKETING"];

#[derive(Debug, Clone, PartialEq)]
pub struct Deal {
    pub production_id: String,
    pub fee: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Talent {
    pub name: String,
    pub role: String,
    pub deals: Vec<Deal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub production_id: String,
    pub start_date: i32,
    pub launch_date: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLine {
    pub category: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub production_id: String,
    pub currency: String,
    pub lines: Vec<BudgetLine>,
}

impl Budget {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.amount).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CashFlowMonth {
    /// `YYYY-MM`.
    pub month: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CashFlow {
    pub production_id: String,
    pub currency: String,
    pub months: Vec<CashFlowMonth>,
}

impl CashFlow {
    pub fn total(&self) -> i64 {
        self.months.iter().map(|m| m.amount).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub production_id: String,
    pub talent_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub due_date: i32,
}

/// One entity's current state.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Production(Production),
    Talent(Talent),
    Schedule(Schedule),
    Budget(Budget),
    CashFlow(CashFlow),
    Payment(Payment),
}

impl Body {
    pub fn kind(&self) -> EntityName {
        match self {
            Body::Production(_) => kind::PRODUCTION,
            Body::Talent(_) => kind::TALENT,
            Body::Schedule(_) => kind::SCHEDULE,
            Body::Budget(_) => kind::BUDGET,
            Body::CashFlow(_) => kind::CASH_FLOW,
            Body::Payment(_) => kind::PAYMENT,
        }
    }
}

/// Projects spend by calendar month: every budget line except MARKETING is spread evenly over
/// the months from `start_date` to the month before launch (or the launch month when they
/// coincide); MARKETING lands in the launch month. Remainders go to the last month of their
/// spread, so the projection total always equals the budget total.
pub fn project_cash_flow(production_id: &str, budget: &Budget, schedule: &Schedule) -> CashFlow {
    let start = month_index(schedule.start_date);
    let launch = month_index(schedule.launch_date).max(start);
    let spend_end = if launch > start { launch - 1 } else { launch };
    let mut amounts = vec![0i64; (launch - start + 1) as usize];
    for line in &budget.lines {
        if line.category == "MARKETING" {
            *amounts.last_mut().expect("at least one month") += line.amount;
            continue;
        }
        let n = spend_end - start + 1;
        let share = line.amount / n as i64;
        for m in 0..n {
            amounts[m as usize] += share;
        }
        amounts[(n - 1) as usize] += line.amount - share * n as i64;
    }
    let months =
        amounts.into_iter().enumerate().map(|(i, amount)| CashFlowMonth { month: month_label(start + i as i32), amount }).collect();
    CashFlow { production_id: production_id.to_string(), currency: budget.currency.clone(), months }
}

/// Months since year 0 of the civil (proleptic Gregorian) date `days` since 1970-01-01.
fn month_index(days: i32) -> i32 {
    let (y, m, _) = civil_from_days(days);
    y * 12 + (m as i32 - 1)
}

fn month_label(index: i32) -> String {
    format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_launch_moves_the_projection_and_keeps_the_total() {
        let budget = Budget {
            production_id: "p".into(),
            currency: "USD".into(),
            lines: vec![
                BudgetLine { category: "PRODUCTION".into(), amount: 1_000_001 },
                BudgetLine { category: "MARKETING".into(), amount: 500 },
            ],
        };
        let start = parse_date("2027-01-15").unwrap();
        let sched = Schedule { production_id: "p".into(), start_date: start, launch_date: parse_date("2027-04-01").unwrap() };
        let cf = project_cash_flow("p", &budget, &sched);
        assert_eq!(cf.months.iter().map(|m| m.month.as_str()).collect::<Vec<_>>(), ["2027-01", "2027-02", "2027-03", "2027-04"]);
        assert_eq!(cf.total(), budget.total());
        assert_eq!(cf.months[3].amount, 500);
        let later = Schedule { launch_date: parse_date("2027-09-01").unwrap(), ..sched };
        let moved = project_cash_flow("p", &budget, &later);
        assert_eq!(moved.months.len(), 9);
        assert_eq!(moved.total(), budget.total());
        assert!(moved.months[0].amount < cf.months[0].amount, "spend spreads over more months");
    }

    #[test]
    fn same_month_start_and_launch() {
        let budget =
            Budget { production_id: "p".into(), currency: "EUR".into(), lines: vec![BudgetLine { category: "POST".into(), amount: 7 }] };
        let d = parse_date("2027-05-02").unwrap();
        let cf = project_cash_flow("p", &budget, &Schedule { production_id: "p".into(), start_date: d, launch_date: d });
        assert_eq!(cf.months, vec![CashFlowMonth { month: "2027-05".into(), amount: 7 }]);
    }
}
