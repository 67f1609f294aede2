//! The events Lambda function: the store and the dispatcher are built once per execution
//! environment; each EventBridge event is handled by the library.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_fn_events::init_tracing();
    let (dispatcher, _) = sluice_lambda::dispatcher_from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let dispatcher = &dispatcher;
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<_>| async move {
            let outcome = sluice_fn_events::handle(dispatcher, event).await?;
            tracing::info!(?outcome, "state-change event handled");
            Ok::<_, lambda_runtime::Error>(outcome)
        },
    )))
    .await
}
