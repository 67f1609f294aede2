//! Global concurrency limits (`/v2/concurrency_limits`, Prefect's
//! `server/api/concurrency_limits_v2.py`) and tag limits (`/concurrency_limits`, its v1 API,
//! served on the v2 limits named `tag:<tag>` as Prefect 3 does).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_core::concurrency::TAG_PREFIX;
use sluice_services::{LimitInput, LimitPatch, SlotRequest};

use crate::AppState;
use crate::dto::concurrency::{
    DecrementBody, IncrementBody, LeaseBody, LimitCreate, LimitUpdate, RenewBody, ResetBody,
    TagLimitCreate, TagSlotsBody, limit_full_json, limit_json, minimal_json, tag_limit_json,
};
use crate::dto::filters::{only_keys, paging};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathId};

fn check_names(names: &[String]) -> ApiResult<()> {
    if names.is_empty() {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "names".into()],
            "List should have at least 1 item after validation, not 0",
        ));
    }
    Ok(())
}

// ---- v2 ----------------------------------------------------------------------------------

pub async fn create(
    State(app): State<AppState>,
    Body(body): Body<LimitCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let limit = app
        .services
        .create_concurrency_limit(LimitInput {
            name: body.name,
            limit: body.limit,
            active: body.active,
            active_slots: body.active_slots,
            denied_slots: body.denied_slots,
            slot_decay_per_second: body.slot_decay_per_second,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(limit_full_json(&limit))))
}

pub async fn read(
    State(app): State<AppState>,
    Path(id_or_name): Path<String>,
) -> ApiResult<Json<Value>> {
    let limit = app.services.read_concurrency_limit(&id_or_name).await?;
    Ok(Json(limit_json(&limit, app.services.now())))
}

pub async fn filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let now = app.services.now();
    let limits = app
        .services
        .list_concurrency_limits(None, Some(limit), offset)
        .await?;
    Ok(Json(limits.iter().map(|l| limit_json(l, now)).collect()))
}

pub async fn update(
    State(app): State<AppState>,
    Path(id_or_name): Path<String>,
    Body(body): Body<LimitUpdate>,
) -> ApiResult<StatusCode> {
    let patch = LimitPatch {
        name: body.name,
        limit: body.limit,
        active: body.active,
        active_slots: body.active_slots,
        denied_slots: body.denied_slots,
        slot_decay_per_second: body.slot_decay_per_second,
    };
    app.services
        .update_concurrency_limit(&id_or_name, patch)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(app): State<AppState>,
    Path(id_or_name): Path<String>,
) -> ApiResult<StatusCode> {
    app.services.delete_concurrency_limit(&id_or_name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn take(
    app: &AppState,
    body: IncrementBody,
    lease: bool,
) -> ApiResult<sluice_services::Granted> {
    check_names(&body.names)?;
    let request = SlotRequest {
        names: body.names,
        slots: body.slots,
        mode: body.mode.into(),
        lease: lease.then(|| {
            (
                body.lease_duration
                    .unwrap_or(sluice_core::concurrency::DEFAULT_LEASE_SECONDS),
                body.holder.map(Into::into),
            )
        }),
    };
    Ok(app.services.increment_concurrency_slots(&request).await?)
}

pub async fn increment(
    State(app): State<AppState>,
    Body(body): Body<IncrementBody>,
) -> ApiResult<Json<Vec<Value>>> {
    let granted = take(&app, body, false).await?;
    Ok(Json(granted.limits.iter().map(minimal_json).collect()))
}

pub async fn increment_with_lease(
    State(app): State<AppState>,
    Body(body): Body<IncrementBody>,
) -> ApiResult<Json<Value>> {
    let granted = take(&app, body, true).await?;
    Ok(Json(json!({
        "lease_id": granted.lease_id,
        "limits": granted.limits.iter().map(minimal_json).collect::<Vec<_>>(),
    })))
}

pub async fn decrement(
    State(app): State<AppState>,
    Body(body): Body<DecrementBody>,
) -> ApiResult<Json<Vec<Value>>> {
    check_names(&body.names)?;
    if body.occupancy_seconds.is_some_and(|s| s <= 0.0) {
        return Err(ApiError::invalid_field(
            vec!["body".into(), "occupancy_seconds".into()],
            "Input should be greater than 0",
        ));
    }
    let limits = app
        .services
        .decrement_concurrency_slots(&body.names, body.slots, body.occupancy_seconds)
        .await?;
    Ok(Json(limits.iter().map(minimal_json).collect()))
}

pub async fn decrement_with_lease(
    State(app): State<AppState>,
    Body(body): Body<LeaseBody>,
) -> ApiResult<StatusCode> {
    app.services
        .decrement_concurrency_slots_with_lease(body.lease_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn renew_lease(
    State(app): State<AppState>,
    PathId(lease_id): PathId,
    Body(body): Body<RenewBody>,
) -> ApiResult<StatusCode> {
    app.services
        .renew_concurrency_lease(lease_id, body.lease_duration)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- v1 (tags) ---------------------------------------------------------------------------

async fn tag_json(
    app: &AppState,
    limit: &sluice_core::concurrency::ConcurrencyLimit,
) -> ApiResult<Value> {
    let holders = app.services.tag_limit_holders(limit).await?;
    Ok(tag_limit_json(limit, &holders))
}

pub async fn v1_create(
    State(app): State<AppState>,
    Body(body): Body<TagLimitCreate>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (limit, created) = app
        .services
        .upsert_tag_limit(&body.tag, body.concurrency_limit)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(tag_json(&app, &limit).await?)))
}

pub async fn v1_read(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    let limit = app.services.read_tag_limit_by_id(id).await?;
    Ok(Json(tag_json(&app, &limit).await?))
}

pub async fn v1_read_by_tag(
    State(app): State<AppState>,
    Path(tag): Path<String>,
) -> ApiResult<Json<Value>> {
    let limit = app.services.read_tag_limit(&tag).await?;
    Ok(Json(tag_json(&app, &limit).await?))
}

pub async fn v1_filter(
    State(app): State<AppState>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Vec<Value>>> {
    only_keys(&body, &["limit", "offset"])?;
    let (limit, offset) = paging(&body)?;
    let limits = app
        .services
        .list_concurrency_limits(Some(TAG_PREFIX), Some(limit), offset)
        .await?;
    let mut out = Vec::with_capacity(limits.len());
    for l in &limits {
        out.push(tag_json(&app, l).await?);
    }
    Ok(Json(out))
}

pub async fn v1_reset(
    State(app): State<AppState>,
    Path(tag): Path<String>,
    Body(body): Body<ResetBody>,
) -> ApiResult<Json<Value>> {
    let holders = body.slot_override.unwrap_or_default();
    app.services.reset_tag_limit(&tag, &holders).await?;
    Ok(Json(Value::Null))
}

pub async fn v1_delete(State(app): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Value>> {
    // By id, any limit (as Prefect's route does), with its leases.
    let limit = app
        .services
        .store
        .read_concurrency_limit(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Concurrency limit not found"))?;
    app.services.delete_limit_and_leases(&limit).await?;
    Ok(Json(Value::Null))
}

pub async fn v1_delete_by_tag(
    State(app): State<AppState>,
    Path(tag): Path<String>,
) -> ApiResult<Json<Value>> {
    let limit = app.services.read_tag_limit(&tag).await?;
    app.services.delete_limit_and_leases(&limit).await?;
    Ok(Json(Value::Null))
}

pub async fn v1_increment(
    State(app): State<AppState>,
    Body(body): Body<TagSlotsBody>,
) -> ApiResult<Json<Vec<Value>>> {
    let limits = app
        .services
        .take_tag_slots(&body.names, body.task_run_id)
        .await?;
    // v1 answers the bare tag as the name.
    Ok(Json(
        limits
            .iter()
            .map(|l| {
                let mut v = minimal_json(l);
                v["name"] = json!(sluice_core::concurrency::tag_of(&l.name).unwrap_or(&l.name));
                v
            })
            .collect(),
    ))
}

pub async fn v1_decrement(
    State(app): State<AppState>,
    Body(body): Body<TagSlotsBody>,
) -> ApiResult<Json<Vec<Value>>> {
    let limits = app
        .services
        .release_tag_slots(&body.names, body.task_run_id)
        .await?;
    Ok(Json(limits.iter().map(minimal_json).collect()))
}
