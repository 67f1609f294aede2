//! The scheduler Lambda function: configuration and the SDK client are built once per execution
//! environment; each EventBridge schedule event runs the ticks once (see the library).

use lambda_runtime::{LambdaEvent, service_fn};

// One invocation at a time per environment: a single-threaded runtime starts faster and
// serves it just as well.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_fn_scheduler::init_tracing();
    let config = sluice_fn_scheduler::Config::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let services = sluice_fn_scheduler::services(&config).await;
    let push_config = sluice_lambda::PushConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let push = sluice_fn_scheduler::Push {
        dispatcher: push_config.dispatcher(services.clone()).await,
        queue: push_config
            .queue()
            .await
            .map(|q| q as std::sync::Arc<dyn sluice_infra::DispatchQueue>),
    };
    let (services, push) = (&services, &push);
    // Boxed: the ticks' futures are large, and the runtime would otherwise keep them inline
    // on main's stack.
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<_>| async move {
            sluice_fn_scheduler::handle_with_push(services, Some(push), event)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    )))
    .await
}
