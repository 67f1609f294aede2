//! Features of Prefect's server that Sluice does not have, answered as Prefect answers when
//! the feature holds nothing, which is the truth here: nothing can be stored in them, since
//! their create routes do not exist (a create is a 404). Prefect's UI lists them on every
//! runs, deployment and event page; docs/prefect-compatibility.md names them.
//!
//! - Saved searches (`/saved_searches`): the runs page's saved filters.
//! - Automations (`/automations`): triggers and actions on events.

use axum::Json;
use axum::extract::Path;
use serde_json::Value;

use crate::dto::filters::only_keys;
use crate::error::ApiResult;
use crate::extract::Body;

/// `POST /saved_searches/filter`: none exist.
pub async fn saved_searches(Body(body): Body<Value>) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["limit", "offset"])?;
    Ok(Json(Vec::new()))
}

/// `POST /automations/filter`: none exist.
pub async fn automations(Body(body): Body<Value>) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["automations", "sort", "limit", "offset"])?;
    Ok(Json(Vec::new()))
}

/// `POST /automations/count`: none exist.
pub async fn count_automations(Body(body): Body<Value>) -> ApiResult<Json<usize>> {
    only_keys(&body, &["automations", "sort", "limit", "offset"])?;
    Ok(Json(0))
}

/// `GET /automations/related-to/{resource id}`: none exist, so none is related to anything.
pub async fn related_automations(Path(_resource): Path<String>) -> Json<Vec<Value>> {
    Json(Vec::new())
}
