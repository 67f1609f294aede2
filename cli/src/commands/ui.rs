//! `sluice ui`: Prefect's UI on this machine against a remote Sluice (the deployed stack), with
//! `/api` proxied and the API key added here, so the key never reaches the browser and the
//! stack hosts no UI.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{ApiArgs, failed};
use crate::ui::{Ui, proxy};

#[derive(Args)]
pub struct UiArgs {
    /// The address to serve the UI on; keep it on loopback, since whoever reaches it acts
    /// with the API key.
    #[arg(long, env = "SLUICE_UI_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "SLUICE_UI_PORT", default_value_t = 4300)]
    port: u16,
    /// Prefect's UI bundles, laid out as in the `prefect` package's `server` folder
    /// (`ui/`, `ui-v2/`). Default: those of the prefect package `python3` imports.
    #[arg(long, env = "SLUICE_UI_DIR")]
    ui_dir: Option<std::path::PathBuf>,
}

pub async fn run(api: &ApiArgs, args: UiArgs) -> anyhow::Result<()> {
    let ui = Ui::locate(args.ui_dir.as_deref())
        .map_err(|reason| anyhow::anyhow!("no UI to serve: {reason}"))?;
    let api_url = api.url();
    // A wrong address or key is said now, not as an empty UI in the browser.
    api.context()?
        .client
        .list_flows(&json!({ "limit": 1 }))
        .await
        .map_err(failed(format_args!("the API at {api_url}")))?;
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("{}:{} is not a valid listen address", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (another `sluice ui`? choose another with --port)")
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving the UI on a non-loopback address: whoever reaches it acts with the API key");
    }
    let upstream = proxy::Upstream {
        client: reqwest::Client::new(),
        api_url: api_url.clone(),
        api_key: api.api_key.clone(),
    };
    let app = proxy::router(upstream).fallback_service(ui.router());
    tracing::info!(api = %api_url, "Prefect's UI at http://{addr}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::signals::shutdown_signal())
        .await
        .context("the HTTP server failed")
}
