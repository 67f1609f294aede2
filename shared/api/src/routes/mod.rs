//! Route table. Paths follow Prefect's server (`src/prefect/server/api/*.py`).

mod absent;
mod artifacts;
mod blocks;
mod concurrency;
mod deployments;
mod events;
mod flow_runs;
mod flows;
mod misc;
mod pools;
mod task_runs;
mod ui;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(misc::health))
        .route("/ready", get(misc::health))
        .route("/version", get(misc::version))
        .route("/admin/version", get(misc::admin_version))
        .route("/admin/storage", get(misc::admin_storage))
        .route("/admin/settings", get(misc::admin_settings))
        .route("/hello", get(misc::hello))
        .route("/csrf-token", get(misc::csrf_token))
        .route(
            "/collections/views/aggregate-worker-metadata",
            get(misc::worker_metadata),
        )
        // work pools
        .route("/work_pools/", post(pools::create))
        .route("/work_pools", post(pools::create))
        .route("/work_pools/filter", post(pools::filter))
        .route("/work_pools/count", post(pools::count))
        .route(
            "/work_pools/{name}",
            get(pools::read).patch(pools::update).delete(pools::remove),
        )
        .route(
            "/work_pools/{name}/get_scheduled_flow_runs",
            post(pools::scheduled_runs),
        )
        .route("/work_pools/{name}/queues", post(pools::create_queue))
        .route("/work_pools/{name}/queues/", post(pools::create_queue))
        .route(
            "/work_pools/{name}/queues/filter",
            post(pools::filter_queues),
        )
        .route(
            "/work_pools/{name}/queues/{queue}",
            get(pools::read_queue)
                .patch(pools::update_queue)
                .delete(pools::remove_queue),
        )
        .route(
            "/work_pools/{name}/workers/heartbeat",
            post(pools::heartbeat),
        )
        .route(
            "/work_pools/{name}/workers/filter",
            post(pools::filter_workers),
        )
        .route(
            "/work_pools/{name}/workers/{worker}",
            delete(pools::remove_worker),
        )
        .route("/work_queues/{id}", get(pools::read_queue_by_id))
        .route("/work_queues/filter", post(pools::filter_all_queues))
        // flows
        .route("/flows/", post(flows::create))
        .route("/flows", post(flows::create))
        .route("/flows/filter", post(flows::filter))
        .route("/flows/count", post(flows::count))
        .route("/flows/paginate", post(flows::paginate))
        .route("/flows/name/{name}", get(flows::read_by_name))
        .route("/flows/{id}", get(flows::read).delete(flows::remove))
        // deployments
        .route("/deployments/", post(deployments::create))
        .route("/deployments", post(deployments::create))
        .route("/deployments/filter", post(deployments::filter))
        .route("/deployments/count", post(deployments::count))
        .route("/deployments/paginate", post(deployments::paginate))
        .route(
            "/deployments/{id}/schedules",
            get(deployments::read_schedules).post(deployments::create_schedules),
        )
        .route(
            "/deployments/{id}/schedules/{schedule_id}",
            patch(deployments::update_schedule).delete(deployments::delete_schedule),
        )
        .route(
            "/deployments/get_scheduled_flow_runs",
            post(deployments::scheduled_runs),
        )
        .route(
            "/deployments/name/{flow}/{name}",
            get(deployments::read_by_name),
        )
        .route(
            "/deployments/{id}",
            get(deployments::read)
                .patch(deployments::update)
                .delete(deployments::remove),
        )
        .route(
            "/deployments/{id}/create_flow_run",
            post(deployments::create_flow_run),
        )
        .route(
            "/deployments/{id}/pause_deployment",
            post(deployments::pause),
        )
        .route(
            "/deployments/{id}/resume_deployment",
            post(deployments::resume),
        )
        // flow runs
        .route("/flow_runs/", post(flow_runs::create))
        .route("/flow_runs", post(flow_runs::create))
        .route("/flow_runs/filter", post(flow_runs::filter))
        .route("/flow_runs/count", post(flow_runs::count))
        .route("/flow_runs/paginate", post(flow_runs::paginate))
        .route("/flow_runs/lateness", post(flow_runs::lateness))
        .route("/flow_runs/{id}/graph-v2", get(flow_runs::graph))
        .route("/ui/flow_runs/history", post(flow_runs::history))
        .route(
            "/ui/flows/count-deployments",
            post(ui::count_deployments_by_flow),
        )
        .route("/ui/flows/next-runs", post(ui::next_runs_by_flow))
        .route("/ui/schemas/validate", post(ui::validate_schema_values))
        .route("/saved_searches/filter", post(absent::saved_searches))
        .route("/automations/filter", post(absent::automations))
        .route("/automations/count", post(absent::count_automations))
        .route(
            "/automations/related-to/{resource}",
            get(absent::related_automations),
        )
        .route(
            "/flow_runs/{id}",
            get(flow_runs::read)
                .patch(flow_runs::update)
                .delete(flow_runs::remove),
        )
        .route("/flow_runs/{id}/labels", patch(flow_runs::update_labels))
        .route("/flow_runs/{id}/set_state", post(flow_runs::set_state))
        .route("/flow_run_states/", get(flow_runs::states))
        .route("/flow_run_states", get(flow_runs::states))
        // task runs
        .route("/task_runs/", post(task_runs::create))
        .route("/task_runs", post(task_runs::create))
        .route("/task_runs/filter", post(task_runs::filter))
        .route("/task_runs/count", post(task_runs::count))
        .route("/task_runs/paginate", post(task_runs::paginate))
        .route("/task_runs/history", post(task_runs::history))
        .route(
            "/task_runs/{id}",
            get(task_runs::read)
                .patch(task_runs::update)
                .delete(task_runs::remove),
        )
        .route("/task_runs/{id}/set_state", post(task_runs::set_state))
        .route("/task_run_states/", get(task_runs::states))
        .route("/task_run_states", get(task_runs::states))
        // the UI's task-run counts
        .route(
            "/ui/flow_runs/count-task-runs",
            post(ui::count_task_runs_by_flow_run),
        )
        .route(
            "/ui/task_runs/dashboard/counts",
            post(ui::dashboard_counts_route),
        )
        .route("/ui/task_runs/count", post(ui::count_by_state))
        .route("/ui/task_runs/{id}", get(ui::read_task_run))
        // events
        .route("/events", post(events::create))
        .route("/events/in", get(events::stream_in))
        .route("/events/out", get(events::stream_out))
        .route("/events/filter", post(events::filter))
        .route("/events/filter/next", get(events::next_page))
        .route("/events/count-by/{countable}", post(events::count_by))
        // variables
        .route("/variables/", post(misc::create_variable))
        .route("/variables", post(misc::create_variable))
        .route("/variables/filter", post(misc::filter_variables))
        .route("/variables/count", post(misc::count_variables))
        .route(
            "/variables/name/{name}",
            get(misc::read_variable_by_name)
                .patch(misc::update_variable_by_name)
                .delete(misc::delete_variable_by_name),
        )
        .route(
            "/variables/{id}",
            get(misc::read_variable)
                .patch(misc::update_variable)
                .delete(misc::delete_variable),
        )
        // artifacts
        .route("/artifacts/", post(artifacts::create))
        .route("/artifacts", post(artifacts::create))
        .route("/artifacts/filter", post(artifacts::filter))
        .route("/artifacts/count", post(artifacts::count))
        .route("/artifacts/latest/filter", post(artifacts::filter_latest))
        .route("/artifacts/latest/count", post(artifacts::count_latest))
        .route("/artifacts/{key}/latest", get(artifacts::read_latest))
        .route(
            "/artifacts/{id}",
            get(artifacts::read)
                .patch(artifacts::update)
                .delete(artifacts::remove),
        )
        // block types, schemas, capabilities and documents
        .route("/block_types/", post(blocks::create_type))
        .route("/block_types", post(blocks::create_type))
        .route("/block_types/filter", post(blocks::filter_types))
        .route(
            "/block_types/install_system_block_types",
            post(blocks::install_system_types),
        )
        .route("/block_types/slug/{slug}", get(blocks::read_type_by_slug))
        .route(
            "/block_types/slug/{slug}/block_documents",
            get(blocks::type_documents),
        )
        .route(
            "/block_types/slug/{slug}/block_documents/name/{name}",
            get(blocks::read_document_by_name),
        )
        .route(
            "/block_types/{id}",
            get(blocks::read_type)
                .patch(blocks::update_type)
                .delete(blocks::delete_type),
        )
        .route("/block_schemas/", post(blocks::create_schema))
        .route("/block_schemas", post(blocks::create_schema))
        .route("/block_schemas/filter", post(blocks::filter_schemas))
        .route(
            "/block_schemas/checksum/{checksum}",
            get(blocks::read_schema_by_checksum),
        )
        .route(
            "/block_schemas/{id}",
            get(blocks::read_schema).delete(blocks::delete_schema),
        )
        .route("/block_capabilities/", get(blocks::capabilities))
        .route("/block_capabilities", get(blocks::capabilities))
        .route("/block_documents/", post(blocks::create_document))
        .route("/block_documents", post(blocks::create_document))
        .route("/block_documents/filter", post(blocks::filter_documents))
        .route("/block_documents/count", post(blocks::count_documents))
        .route(
            "/block_documents/{id}",
            get(blocks::read_document)
                .patch(blocks::update_document)
                .delete(blocks::delete_document),
        )
        // global concurrency limits (v2)
        .route("/v2/concurrency_limits/", post(concurrency::create))
        .route("/v2/concurrency_limits", post(concurrency::create))
        .route("/v2/concurrency_limits/filter", post(concurrency::filter))
        .route(
            "/v2/concurrency_limits/increment",
            post(concurrency::increment),
        )
        .route(
            "/v2/concurrency_limits/increment-with-lease",
            post(concurrency::increment_with_lease),
        )
        .route(
            "/v2/concurrency_limits/decrement",
            post(concurrency::decrement),
        )
        .route(
            "/v2/concurrency_limits/decrement-with-lease",
            post(concurrency::decrement_with_lease),
        )
        .route(
            "/v2/concurrency_limits/leases/{id}/renew",
            post(concurrency::renew_lease),
        )
        .route(
            "/v2/concurrency_limits/{id_or_name}",
            get(concurrency::read)
                .patch(concurrency::update)
                .delete(concurrency::remove),
        )
        // tag concurrency limits (v1)
        .route("/concurrency_limits/", post(concurrency::v1_create))
        .route("/concurrency_limits", post(concurrency::v1_create))
        .route("/concurrency_limits/filter", post(concurrency::v1_filter))
        .route(
            "/concurrency_limits/increment",
            post(concurrency::v1_increment),
        )
        .route(
            "/concurrency_limits/decrement",
            post(concurrency::v1_decrement),
        )
        .route(
            "/concurrency_limits/tag/{tag}",
            get(concurrency::v1_read_by_tag).delete(concurrency::v1_delete_by_tag),
        )
        .route(
            "/concurrency_limits/tag/{tag}/reset",
            post(concurrency::v1_reset),
        )
        .route(
            "/concurrency_limits/{id}",
            get(concurrency::v1_read).delete(concurrency::v1_delete),
        )
        // logs
        .route("/logs/", post(misc::create_logs))
        .route("/logs", post(misc::create_logs))
        .route("/logs/filter", post(misc::filter_logs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "detail": "Not Found" })),
    )
        .into_response()
}

/// A known path with a method it does not serve: FastAPI's 405 with a `detail` body.
async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "detail": "Method Not Allowed" })),
    )
        .into_response()
}
