//! The `/health` verdict of a process: `200 ok`, or `503` naming what is degraded (e.g. a
//! consumer whose lag does not shrink, see `kafka::stall`). Every role's `/health` answers from
//! the same [`Health`], which travels inside [`crate::metrics::Metrics`].

use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default, Debug)]
pub struct Health {
    problems: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Health {
    /// Marks `what` (e.g. a consumer group) degraded with a reason; replaces an earlier one.
    pub fn set(&self, what: &str, reason: String) {
        self.problems.lock().expect("health lock poisoned").insert(what.to_string(), reason);
    }

    pub fn clear(&self, what: &str) {
        self.problems.lock().expect("health lock poisoned").remove(what);
    }

    /// The current problems, empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().expect("health lock poisoned").values().cloned().collect()
    }

    /// What `/health` answers.
    pub fn response(&self) -> (StatusCode, String) {
        let problems = self.problems();
        if problems.is_empty() {
            (StatusCode::OK, "ok".into())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, format!("degraded: {}\n", problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_until_cleared() {
        let h = Health::default();
        assert_eq!(h.response(), (StatusCode::OK, "ok".to_string()));
        h.set("slate-sink-sql", "group slate-sink-sql: 1 stalled partition(s)".into());
        let (code, body) = h.clone().response();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("slate-sink-sql: 1 stalled"), "{body}");
        h.clear("slate-sink-sql");
        assert_eq!(h.response().0, StatusCode::OK);
    }
}
