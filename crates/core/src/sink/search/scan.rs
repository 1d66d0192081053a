//! Reading a search sink's documents back (for `slate verify` and the shadow validator): every
//! document of an index, paged with `search_after` on the `id` keyword, after a refresh so that
//! every acknowledged write is visible.

use crate::config::SearchSinkConfig;
use serde_json::Value as Json;

const PAGE: usize = 1000;

/// A client for one search target, with its credentials.
pub struct Scanner {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Scanner {
    pub fn new(cfg: &SearchSinkConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build().map_err(|e| e.to_string())?;
        let auth = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.expose().to_string())),
            _ => None,
        };
        Ok(Self { http, base: cfg.url.trim_end_matches('/').to_string(), auth })
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((u, p)) => request.basic_auth(u, Some(p)),
            None => request,
        }
    }

    /// Makes every acknowledged write to indices `<pattern>` visible (`_bulk` does not refresh).
    pub async fn refresh(&self, pattern: &str) -> Result<(), String> {
        self.authed(self.http.post(format!("{}/{pattern}/_refresh", self.base)))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map(drop)
            .map_err(|e| format!("refresh failed: {e}"))
    }

    /// Calls `each` with every hit of `index` (its `_source` limited to `fields` when given);
    /// an index that does not exist has no documents.
    pub async fn scan(&self, index: &str, fields: Option<&[&str]>, mut each: impl FnMut(&Json)) -> Result<(), String> {
        let mut after: Option<Json> = None;
        loop {
            let mut body = serde_json::json!({ "size": PAGE, "sort": [{ "id": "asc" }], "query": { "match_all": {} } });
            if let Some(fields) = fields {
                body["_source"] = serde_json::json!(fields);
            }
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let resp = self.authed(self.http.post(format!("{}/{index}/_search", self.base)).json(&body)).send().await;
            let resp = resp.map_err(|e| e.to_string())?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(());
            }
            let reply: Json = resp.error_for_status().map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
            let hits = reply["hits"]["hits"].as_array().cloned().unwrap_or_default();
            hits.iter().for_each(&mut each);
            match hits.last() {
                Some(last) if hits.len() == PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(()),
            }
        }
    }
}
