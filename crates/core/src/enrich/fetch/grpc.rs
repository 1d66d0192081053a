//! gRPC fetcher: `BatchGet(entity, ids)` (`schemas/proto/studio.proto`) at a configurable method
//! path, so a service of your own with the same messages under another name works unchanged.
//!
//! Each proto body becomes the JSON object the GraphQL fetcher returns for the same entity
//! (Avro field names, `id` and `version` included, dates as `YYYY-MM-DD`), so the two protocols
//! are interchangeable per entity. Status codes UNAVAILABLE, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED, ABORTED and CANCELLED (tonic's own client timeout) are transient; every
//! other code is `Rejected`.

use super::{FetchError, FetchReply, Fetched, MAX_RESPONSE_BYTES, assemble};
use crate::config::{ConfigError, EntitySourceConfig, SourcesConfig};
use crate::event::EntityName;
use crate::proto::{self, entity::Body};
use crate::time::format_date;
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::Duration;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

pub const DEFAULT_METHOD: &str = "/studio.finance.v1.StudioSource/BatchGet";

pub struct GrpcFetcher {
    kind: EntityName,
    channel: Channel,
    /// For error messages: the endpoint and method called.
    target: String,
    method: PathAndQuery,
    authorization: Option<MetadataValue<Ascii>>,
    timeout: Duration,
}

/// A channel that connects on first use (and reconnects after failures); `timeout` bounds
/// connection setup and each call.
pub(super) fn lazy_channel(key: &str, endpoint: &str, timeout: Duration) -> Result<Channel, ConfigError> {
    let endpoint = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| ConfigError::Invalid { key: key.into(), message: format!("'{endpoint}' is not a gRPC endpoint URL: {e}") })?;
    Ok(endpoint.connect_timeout(timeout).connect_lazy())
}

impl GrpcFetcher {
    pub fn try_new(kind: EntityName, cfg: &SourcesConfig, entity: &EntitySourceConfig, channel: Channel) -> Result<Self, ConfigError> {
        let method = entity.grpc_method.as_deref().unwrap_or(DEFAULT_METHOD);
        let method = PathAndQuery::from_str(method).map_err(|e| ConfigError::Invalid {
            key: format!("sources.entities.{kind}.grpc_method"),
            message: format!("'{method}' is not a method path: {e}"),
        })?;
        let authorization = match &cfg.bearer_token {
            Some(token) => Some(MetadataValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| ConfigError::Invalid {
                key: "sources.bearer_token".into(),
                message: "contains characters that cannot be sent as gRPC metadata".into(),
            })?),
            None => None,
        };
        let target = format!("{}{method}", entity.endpoint.as_deref().unwrap_or(&cfg.grpc_endpoint).trim_end_matches('/'));
        Ok(Self { kind, channel, target, method, authorization, timeout: cfg.timeout })
    }

    pub async fn fetch(&self, ids: &[String]) -> Result<FetchReply, FetchError> {
        let call = self.call(ids);
        let response = tokio::time::timeout(self.timeout, call).await.map_err(|_| FetchError::Timeout(self.timeout))??;
        let mut found = Vec::with_capacity(response.found.len());
        for entity in response.found {
            let Some(body) = entity.body else {
                return Err(FetchError::BadResponse(format!("entity '{}' has no body", entity.id)));
            };
            let (kind, body) = to_json(&entity.id, entity.version, body)?;
            if let Some(kind) = kind
                && kind != self.kind
            {
                return Err(FetchError::BadResponse(format!("asked for {} '{}', got a {kind}", self.kind, entity.id)));
            }
            found.push(Fetched { id: entity.id, version: entity.version, body });
        }
        let deleted = response.deleted.into_iter().map(|t| (t.id, t.version)).collect();
        assemble(ids, found, deleted, response.missing_ids)
    }

    async fn call(&self, ids: &[String]) -> Result<proto::BatchGetResponse, FetchError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES);
        grpc.ready().await.map_err(|e| FetchError::Unavailable(format!("{}: grpc channel not ready: {e}", self.target)))?;
        let mut request = tonic::Request::new(proto::BatchGetRequest { entity: self.kind.as_str().into(), ids: ids.to_vec() });
        request.set_timeout(self.timeout);
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        let codec = tonic_prost::ProstCodec::<proto::BatchGetRequest, proto::BatchGetResponse>::default();
        match grpc.unary(request, self.method.clone(), codec).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(status_error(&self.target, &status)),
        }
    }
}

fn status_error(target: &str, status: &tonic::Status) -> FetchError {
    let message = format!("{target}: grpc {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted | Code::Cancelled => {
            FetchError::Unavailable(message)
        }
        _ => FetchError::Rejected(message),
    }
}

/// The proto body as the GraphQL API shapes it: Avro field names, `id` and `version` included,
/// dates as `YYYY-MM-DD`, absent optionals as `null`. The entity a typed body belongs to is
/// returned to be checked; a `json` body (the generic contract) belongs to what was asked for.
fn to_json(id: &str, version: i64, body: Body) -> Result<(Option<EntityName>, Value), FetchError> {
    let (kind, mut fields) = match body {
        Body::Json(text) => {
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| FetchError::BadResponse(format!("entity '{id}': the json body is not JSON: {e}")))?;
            if !value.is_object() {
                return Err(FetchError::BadResponse(format!("entity '{id}': the json body is not a JSON object")));
            }
            (None, value)
        }
        Body::Production(p) => (
            Some(crate::catalogue::example::PRODUCTION),
            json!({ "title": p.title, "status": p.status, "genre": p.genre, "currency": p.currency,
                    "budget_id": p.budget_id, "schedule_id": p.schedule_id }),
        ),
        Body::Talent(t) => (
            Some(crate::catalogue::example::TALENT),
            json!({ "name": t.name, "role": t.role,
                    "deals": t.deals.into_iter().map(|d| json!({ "production_id": d.production_id, "fee": d.fee, "currency": d.currency })).collect::<Vec<_>>() }),
        ),
        Body::Schedule(s) => (
            Some(crate::catalogue::example::SCHEDULE),
            json!({ "production_id": s.production_id, "start_date": format_date(s.start_date), "launch_date": format_date(s.launch_date) }),
        ),
        Body::Budget(b) => (
            Some(crate::catalogue::example::BUDGET),
            json!({ "production_id": b.production_id, "currency": b.currency, "total": b.total,
                    "lines": b.lines.into_iter().map(|l| json!({ "category": l.category, "amount": l.amount })).collect::<Vec<_>>() }),
        ),
        Body::CashFlow(c) => (
            Some(crate::catalogue::example::CASH_FLOW),
            json!({ "production_id": c.production_id, "currency": c.currency, "total": c.total,
                    "months": c.months.into_iter().map(|m| json!({ "month": m.month, "amount": m.amount })).collect::<Vec<_>>() }),
        ),
        Body::Payment(p) => (
            Some(crate::catalogue::example::PAYMENT),
            json!({ "production_id": p.production_id, "talent_id": p.talent_id, "amount": p.amount, "currency": p.currency,
                    "status": p.status, "due_date": format_date(p.due_date) }),
        ),
    };
    let map = fields.as_object_mut().expect("built as an object");
    map.insert("id".into(), Value::String(id.to_string()));
    map.insert("version".into(), Value::from(version));
    Ok((kind, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_classify() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::ResourceExhausted, Code::Aborted, Code::Cancelled] {
            assert!(status_error("/m", &tonic::Status::new(code, "x")).is_transient(), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::NotFound, Code::Unimplemented, Code::PermissionDenied, Code::Internal] {
            assert!(matches!(status_error("/m", &tonic::Status::new(code, "x")), FetchError::Rejected(_)), "{code:?}");
        }
    }

    #[test]
    fn bodies_use_avro_names_and_iso_dates() {
        let body = Body::Schedule(proto::Schedule { production_id: "prod-1".into(), start_date: 0, launch_date: 365 });
        let (kind, json) = to_json("sch-1", 3, body).unwrap();
        assert_eq!(kind, Some(crate::catalogue::example::SCHEDULE));
        assert_eq!(
            json,
            json!({ "id": "sch-1", "version": 3, "production_id": "prod-1", "start_date": "1970-01-01", "launch_date": "1971-01-01" })
        );
        let (_, json) = to_json("prod-1", 1, Body::Production(proto::Production { budget_id: None, ..Default::default() })).unwrap();
        assert!(json["budget_id"].is_null() && json.get("schedule_id").is_some());
        let (kind, json) = to_json("inv-1", 2, Body::Json(r#"{"total": 5, "version": 1}"#.into())).unwrap();
        assert_eq!((kind, json), (None, json!({"id": "inv-1", "version": 2, "total": 5})));
        assert!(to_json("inv-1", 2, Body::Json("[1]".into())).is_err());
    }
}
