//! The events queue's consumer: queued events taken in by batches.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_lambda::init_tracing();
    let services = sluice_lambda::services_from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let services = &services;
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<_>| async move {
            let (response, summary) = sluice_fn_socket::ingest(services, event.payload).await;
            tracing::info!(?summary, "events batch");
            Ok::<_, lambda_runtime::Error>(response)
        },
    )))
    .await
}
