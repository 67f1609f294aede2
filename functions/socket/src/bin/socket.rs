//! The WebSocket API's function: `$connect`, `$disconnect` and the `auth` route.

use lambda_runtime::{LambdaEvent, service_fn};
use sluice_services::ApiKeyCache;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_lambda::init_tracing();
    let services = sluice_lambda::services_from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let cache = ApiKeyCache::new(ApiKeyCache::DEFAULT_TTL, ApiKeyCache::DEFAULT_CAPACITY);
    let (services, cache) = (&services, &cache);
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<_>| async move {
            Ok::<_, lambda_runtime::Error>(
                sluice_fn_socket::handle_socket(services, cache, event.payload).await,
            )
        },
    )))
    .await
}
