//! Set-up shared by the Lambda functions in `functions/`.

mod push;

pub use push::{PushConfig, PushConfigError, dispatcher_from_env, services_from_env};

/// Installs the JSON log format Lambda forwards to CloudWatch: one object per line on stdout,
/// filtered by `RUST_LOG` (default `info`). No ANSI colours and no timestamps of our own:
/// CloudWatch stamps every line.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        .init();
}
