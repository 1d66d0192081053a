//! The studio's gRPC API (`schemas/proto/studio.proto`): `BatchGet(entity, ids)`.

use super::kind;
use super::model::Body;
use super::{ReadError, Studio};
use crate::event::EntityName;
use crate::proto::{self, entity::Body as PBody, studio_source_server::StudioSource};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct GrpcService {
    studio: Arc<Studio>,
}

impl GrpcService {
    pub fn new(studio: Arc<Studio>) -> proto::studio_source_server::StudioSourceServer<Self> {
        proto::studio_source_server::StudioSourceServer::new(Self { studio })
    }
}

#[tonic::async_trait]
impl StudioSource for GrpcService {
    async fn batch_get(&self, request: Request<proto::BatchGetRequest>) -> Result<Response<proto::BatchGetResponse>, Status> {
        let req = request.into_inner();
        let kind = EntityName::lookup(&req.entity)
            .ok()
            .filter(|k| kind::is_studio(*k))
            .ok_or_else(|| Status::invalid_argument(format!("unknown entity '{}': the studio serves {:?}", req.entity, kind::ALL)))?;
        let read = self.studio.read("grpc", kind, &req.ids).await.map_err(|e| match e {
            ReadError::TooMany(_) => Status::invalid_argument(e.to_string()),
            ReadError::Fault(super::faults::Fault::Error) => Status::unavailable(e.to_string()),
            ReadError::Fault(super::faults::Fault::Timeout) => Status::deadline_exceeded(e.to_string()),
        })?;
        Ok(Response::new(proto::BatchGetResponse {
            found: read.found.into_iter().map(|(id, version, body)| proto::Entity { id, version, body: Some(to_proto(body)) }).collect(),
            missing_ids: read.missing,
            deleted: read.deleted.into_iter().map(|(id, version)| proto::Tombstone { id, version }).collect(),
        }))
    }
}

fn to_proto(body: Body) -> PBody {
    match body {
        Body::Production(p) => PBody::Production(proto::Production {
            title: p.title,
            status: p.status,
            genre: p.genre,
            currency: p.currency,
            budget_id: p.budget_id,
            schedule_id: p.schedule_id,
        }),
        Body::Talent(t) => PBody::Talent(proto::Talent {
            name: t.name,
            role: t.role,
            deals: t.deals.into_iter().map(|d| proto::Deal { production_id: d.production_id, fee: d.fee, currency: d.currency }).collect(),
        }),
        Body::Schedule(s) => {
            PBody::Schedule(proto::Schedule { production_id: s.production_id, start_date: s.start_date, launch_date: s.launch_date })
        }
        Body::Budget(b) => PBody::Budget(proto::Budget {
            total: b.total(),
            production_id: b.production_id,
            currency: b.currency,
            lines: b.lines.into_iter().map(|l| proto::BudgetLine { category: l.category, amount: l.amount }).collect(),
        }),
        Body::CashFlow(c) => PBody::CashFlow(proto::CashFlow {
            total: c.total(),
            production_id: c.production_id,
            currency: c.currency,
            months: c.months.into_iter().map(|m| proto::CashFlowMonth { month: m.month, amount: m.amount }).collect(),
        }),
        Body::Payment(p) => PBody::Payment(proto::Payment {
            production_id: p.production_id,
            talent_id: p.talent_id,
            amount: p.amount,
            currency: p.currency,
            status: p.status,
            due_date: p.due_date,
        }),
    }
}
