//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use serde_json::json;

use crate::app::App;
use crate::error::ApiError;
use crate::openapi;
use crate::router::Reply;

pub(super) fn healthz() -> Reply {
    Reply::ok(json!({ "status": "ok" }))
}

pub(super) async fn readyz(app: &App) -> Result<Reply, ApiError> {
    match app.inner.readiness.check().await {
        Ok(()) => Ok(Reply::ok(json!({ "status": "ready" }))),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            Err(ApiError::NotReady(reason))
        }
    }
}

pub(super) fn metrics(app: &App) -> Reply {
    Reply::Text(
        "text/plain; version=0.0.4; charset=utf-8",
        app.metrics_text(),
    )
}

pub(super) fn openapi() -> Reply {
    Reply::ok(openapi::document())
}
