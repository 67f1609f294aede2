//! `sluice server start`: the API and the background services on the chosen store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use sluice_api::{Auth, Options};
use sluice_services::{Services, Settings, SystemClock};

use crate::store::StoreArgs;

/// `--auth`: who may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Anyone who can reach the port (fine on a loopback address).
    None,
    /// Every request but the health probes needs `Authorization: Bearer <key>` naming a key
    /// made with `sluice api-key create`.
    ApiKey,
}

impl From<AuthMode> for Auth {
    fn from(mode: AuthMode) -> Auth {
        match mode {
            AuthMode::None => Auth::None,
            AuthMode::ApiKey => Auth::ApiKey,
        }
    }
}

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Serve the API on HOST:PORT with the scheduler, late-run marker and foreman running.
    Start {
        #[arg(long, env = "SLUICE_HOST", default_value = "127.0.0.1")]
        host: String,
        #[arg(long, env = "SLUICE_PORT", default_value_t = 4200)]
        port: u16,
        #[command(flatten)]
        store: StoreArgs,
        /// Who may call the API. With `api-key`, a deleted key keeps working for up to a
        /// minute in a running server (successful lookups are cached).
        #[arg(long, env = "SLUICE_AUTH", value_enum, default_value = "none")]
        auth: AuthMode,
    },
}

pub async fn run(command: ServerCommand) -> anyhow::Result<()> {
    let ServerCommand::Start {
        host,
        port,
        store,
        auth,
    } = command;
    let location = store.describe();
    let store = store.open().await?;
    let services = Services::new(store, Arc::new(SystemClock), Settings::default());
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("{host}:{port} is not a valid listen address"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    match auth {
        AuthMode::ApiKey => {
            let keys = services
                .list_api_keys()
                .await
                .context("cannot read the API keys")?;
            if keys.is_empty() {
                tracing::warn!(
                    "--auth api-key but no API key exists: every request will be refused; \
                     create one with `sluice api-key create NAME`"
                );
            }
        }
        AuthMode::None if !addr.ip().is_loopback() => {
            tracing::warn!(%addr, "serving without authentication on a non-loopback address; see --auth");
        }
        AuthMode::None => {}
    }
    tracing::info!(%addr, store = %location, auth = %Auth::from(auth), "sluice server listening; API at http://{addr}/api");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = {
        let services = services.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(sluice_services::background::run(
            services,
            Default::default(),
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ))
    };
    let app = sluice_api::router_with(
        services,
        Options {
            auth: auth.into(),
            ..Options::default()
        },
    );
    let mut rx = stop_rx;
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx.wait_for(|stop| *stop).await;
    });
    let signals = async move {
        crate::signals::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let (served, ()) = tokio::join!(serve, signals);
    served.context("the HTTP server failed")?;
    background
        .await
        .context("the background services panicked")?;
    Ok(())
}
