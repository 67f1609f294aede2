//! The api Lambda function: configuration and the SDK client are built once per execution
//! environment, then `lambda_http` feeds every HTTP API (payload v2) event to the one router.

// One invocation at a time per environment: a single-threaded runtime starts faster and
// serves it just as well.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    sluice_fn_api::init_tracing();
    let config = sluice_fn_api::Config::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let router = sluice_fn_api::app(&config).await;
    lambda_http::run(router).await
}
