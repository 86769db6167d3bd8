//! The HTTP listener: `GET /healthz` and `GET /metrics` (no authentication; DESIGN §5.4), and
//! the JSON API under `/api/v1` ([`crate::api`]; bearer tokens). The admin UI joins them in a
//! later release.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

use crate::api::ApiState;
use crate::reload::Shared;

/// The health report.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, or `stale` when the store could not be read and the last snapshot is served.
    pub status: &'static str,
    /// The revision being served (0 before any store answered).
    pub revision: i64,
    /// Seconds since the snapshot was last confirmed current (`null` if it never was).
    pub snapshot_age_s: Option<f64>,
    /// `ok` or `unreachable`.
    pub store: &'static str,
}

/// The routes: health and metrics over the server's shared state, the API over its own.
pub fn router(shared: Arc<Shared>, api: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared)
        .merge(crate::api::router(api))
}

/// The health of a node: it decides whenever it runs (with the last snapshot, or none), so this
/// is always 200; `stale` says the store is not answering.
pub fn health(shared: &Shared) -> Health {
    let store_ok = shared.store_ok();
    Health {
        status: if store_ok { "ok" } else { "stale" },
        revision: shared.snapshot.load().revision(),
        snapshot_age_s: shared.snapshot_age_s(),
        store: if store_ok { "ok" } else { "unreachable" },
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Json<Health> {
    Json(health(&shared))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let text = shared.metrics.render_with(
        shared.snapshot.load().revision(),
        shared.snapshot_age_s().unwrap_or(-1.0),
        shared.store_ok(),
        Some(&shared.history),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
