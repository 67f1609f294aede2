//! The dispatcher Lambda function: the store, the ECS/Batch/SQS clients and the dispatcher are
//! built once per execution environment; each SQS batch is handled by the library.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use sluice_infra::DispatchQueue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_fn_dispatcher::init_tracing();
    let (dispatcher, push) = sluice_lambda::dispatcher_from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let queue: Option<Arc<dyn DispatchQueue>> =
        push.queue().await.map(|q| q as Arc<dyn DispatchQueue>);
    let (dispatcher, queue) = (&dispatcher, queue.as_ref());
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<_>| async move {
            let (response, summary) = sluice_fn_dispatcher::handle(dispatcher, queue, event).await;
            tracing::info!(
                ?summary,
                failures = response.batch_item_failures.len(),
                "dispatch batch done"
            );
            Ok::<_, lambda_runtime::Error>(response)
        },
    )))
    .await
}
