//! The demo's launch-date panel: a production of its own (created at start, after the seeded
//! ones, so the load generator never picks it) whose launch date the dashboard button moves.
//! Moving a launch re-projects the cash flow at the source; the page then watches the analyst
//! API until the new projection has travelled studio → enricher → SQL sink.

use crate::studio::Studio;
use crate::studio::model::{Body, BudgetLine, civil_from_days, days_from_civil, format_date};
use crate::studio::store::{NewProduction, StudioError};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How far one click moves the launch.
pub const SHIFT_MONTHS: i32 = 3;

pub struct LaunchControl {
    studio: Arc<Studio>,
    pub production_id: String,
    pub schedule_id: String,
    title: String,
    /// The next click moves the launch later (true) or back (false), so repeated clicks
    /// oscillate instead of drifting years away.
    later: AtomicBool,
}

#[derive(Debug, Serialize)]
pub struct Featured {
    pub production_id: String,
    pub schedule_id: String,
    pub title: String,
    pub launch_date: String,
}

#[derive(Debug, Serialize)]
pub struct Moved {
    pub production_id: String,
    pub from: String,
    pub to: String,
    /// Source version of the schedule after the move.
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Studio(#[from] StudioError),
    #[error("the move was applied but its change events were not published: {0}")]
    Publish(#[from] crate::kafka::ProduceError),
    #[error("schedule {0} is gone")]
    NoSchedule(String),
}

/// `days` moved by `months` calendar months, the day clamped to 28 so every month has it.
pub fn add_months(days: i32, months: i32) -> i32 {
    let (y, m, d) = civil_from_days(days);
    let index = y * 12 + (m as i32 - 1) + months;
    days_from_civil(index.div_euclid(12), (index.rem_euclid(12) + 1) as u32, d.min(28))
}

impl LaunchControl {
    /// Creates the featured production (start next month, launch nine months later) and
    /// publishes its change events.
    pub async fn create(studio: Arc<Studio>, today: i32) -> Result<Self, LaunchError> {
        let start = add_months(today, 1);
        let m = |millions: i64| millions * 1_000_000 * 100;
        let lines = [("ABOVE_THE_LINE", 12), ("PRODUCTION", 30), ("POST", 8), ("MARKETING", 10)]
            .into_iter()
            .map(|(category, amount)| BudgetLine { category: category.into(), amount: m(amount) })
            .collect();
        let title = "Northern Lights (demo)".to_string();
        let (production_id, changes) = studio.store.create_production(NewProduction {
            title: title.clone(),
            genre: "Drama".into(),
            currency: "USD".into(),
            start_date: start,
            launch_date: add_months(start, 9),
            lines,
        })?;
        studio.publish(&changes).await?;
        let schedule_id = changes
            .iter()
            .find(|c| c.entity == crate::studio::kind::SCHEDULE)
            .map(|c| c.id.clone())
            .ok_or_else(|| LaunchError::NoSchedule(production_id.clone()))?;
        Ok(Self { studio, production_id, schedule_id, title, later: AtomicBool::new(true) })
    }

    fn schedule(&self) -> Result<(i32, i32, i64), LaunchError> {
        let read = self.studio.store.batch_get(crate::studio::kind::SCHEDULE, std::slice::from_ref(&self.schedule_id));
        match read.found.first() {
            Some((_, version, Body::Schedule(s))) => Ok((s.start_date, s.launch_date, *version)),
            _ => Err(LaunchError::NoSchedule(self.schedule_id.clone())),
        }
    }

    pub fn featured(&self) -> Result<Featured, LaunchError> {
        let (_, launch, _) = self.schedule()?;
        Ok(Featured {
            production_id: self.production_id.clone(),
            schedule_id: self.schedule_id.clone(),
            title: self.title.clone(),
            launch_date: format_date(launch),
        })
    }

    /// Moves the launch by [`SHIFT_MONTHS`] (alternately later and back) and publishes the
    /// schedule and cash-flow changes; returns once the broker acknowledged them.
    pub async fn shift(&self) -> Result<Moved, LaunchError> {
        let (start, launch, _) = self.schedule()?;
        let later = self.later.fetch_xor(true, Ordering::SeqCst);
        let mut to = add_months(launch, if later { SHIFT_MONTHS } else { -SHIFT_MONTHS });
        if to < start {
            to = add_months(launch, SHIFT_MONTHS);
        }
        let changes = self.studio.store.reschedule(&self.schedule_id, None, Some(to))?;
        self.studio.publish(&changes).await?;
        let version = changes.iter().find(|c| c.entity == crate::studio::kind::SCHEDULE).map(|c| c.version).unwrap_or_default();
        Ok(Moved { production_id: self.production_id.clone(), from: format_date(launch), to: format_date(to), version })
    }
}

/// `GET /api/demo/featured`, `POST /api/demo/launch`.
pub fn router(control: Arc<LaunchControl>) -> Router {
    Router::new().route("/api/demo/featured", get(featured)).route("/api/demo/launch", post(launch)).with_state(control)
}

fn error(e: LaunchError) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": e.to_string() })))
}

async fn featured(State(c): State<Arc<LaunchControl>>) -> impl IntoResponse {
    c.featured().map(|f| (StatusCode::OK, Json(serde_json::to_value(f).expect("serializes")))).unwrap_or_else(error)
}

async fn launch(State(c): State<Arc<LaunchControl>>) -> impl IntoResponse {
    c.shift().await.map(|m| (StatusCode::OK, Json(serde_json::to_value(m).expect("serializes")))).unwrap_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studio::model::parse_date;

    #[test]
    fn months_move_across_years_and_clamp_the_day() {
        let d = |s| parse_date(s).unwrap();
        assert_eq!(format_date(add_months(d("2026-11-30"), 3)), "2027-02-28");
        assert_eq!(format_date(add_months(d("2027-02-15"), -3)), "2026-11-15");
        assert_eq!(format_date(add_months(d("2027-01-01"), -1)), "2026-12-01");
        assert_eq!(format_date(add_months(d("2027-01-10"), 0)), "2027-01-10");
    }
}
