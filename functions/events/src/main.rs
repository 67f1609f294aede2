//! The events Lambda function: the store and the dispatcher are built once per execution
//! environment; each EventBridge event is handled by the library.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use sluice_services::{Services, Settings, SystemClock};
use sluice_store_dynamodb::{DynamoStore, Retention};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_fn_events::init_tracing();
    let table = std::env::var("SLUICE_TABLE")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(
            "SLUICE_TABLE is not set: it must name the DynamoDB table Sluice stores its data in",
        )?;
    let retention = Retention::from_env()?;
    let push = sluice_lambda::PushConfig::from_env()?;
    let store = DynamoStore::connect(table, retention).await;
    let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let dispatcher = push.dispatcher(services).await;
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
