//! `GET /v1/nodes`: the nodes sharing the store, their heartbeats and how many webhooks each owns.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorResponse;
use super::{ApiError, time};
use crate::app::Webhooks;
use crate::store::NodeRecord;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/nodes").get(list).default_service(web::to(super::allow("GET"))));
}

/// One node.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeOut {
    /// `WEBHOOKS_NODE_ID`, or generated at start.
    id: String,
    /// Whether it heartbeated within the lease time.
    live: bool,
    /// Whether it is the node answering this request.
    current: bool,
    /// Webhooks whose lease it holds.
    owned_webhooks: u64,
    /// First heartbeat of its current run, RFC 3339 (database clock).
    #[schema(format = DateTime)]
    started_at: String,
    /// Last heartbeat, RFC 3339 (database clock).
    #[schema(format = DateTime)]
    heartbeat_at: String,
    /// When it stops counting as live without another heartbeat, RFC 3339.
    #[schema(format = DateTime)]
    expires_at: String,
    /// What the node reports about itself (version).
    info: String,
}

/// Body of `GET /v1/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// Live nodes first, then those that stopped heartbeating within the last hour.
    pub data: Vec<NodeOut>,
}

impl NodeOut {
    fn new(n: NodeRecord, current: &str) -> Self {
        Self {
            current: n.id == current,
            live: n.live,
            owned_webhooks: n.owned,
            started_at: time(Some(n.started_at_ms)).unwrap_or_default(),
            heartbeat_at: time(Some(n.heartbeat_at_ms)).unwrap_or_default(),
            expires_at: time(Some(n.expires_at_ms)).unwrap_or_default(),
            info: n.info,
            id: n.id,
        }
    }
}

/// The cluster's nodes.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "ops",
    operation_id = "listNodes",
    responses(
        (status = 200, description = "Every node sharing the database: live ones, and those that stopped heartbeating within the last hour.", body = NodeList),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(webhooks: web::Data<Webhooks>) -> Result<HttpResponse, ApiError> {
    let me = webhooks.node_id().to_string();
    let data = webhooks.nodes().await?.into_iter().map(|n| NodeOut::new(n, &me)).collect();
    Ok(HttpResponse::Ok().json(NodeList { data }))
}
