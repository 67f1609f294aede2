//! `sluice server start`: the API and the background services on the embedded SQLite store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use sluice_services::{Services, Settings, SystemClock};
use sluice_store::SqliteStore;

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Serve the API on HOST:PORT with the scheduler, late-run marker and foreman running.
    Start {
        #[arg(long, env = "SLUICE_HOST", default_value = "127.0.0.1")]
        host: String,
        #[arg(long, env = "SLUICE_PORT", default_value_t = 4200)]
        port: u16,
        /// SQLite database file (created if missing). Default: the user's data directory.
        #[arg(long, env = "SLUICE_DB")]
        db: Option<PathBuf>,
    },
}

pub async fn run(command: ServerCommand) -> anyhow::Result<()> {
    let ServerCommand::Start { host, port, db } = command;
    let path = db.unwrap_or_else(SqliteStore::default_path);
    let store = SqliteStore::open(&path)
        .with_context(|| format!("cannot open the database at {}", path.display()))?;
    let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("{host}:{port} is not a valid listen address"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, db = %path.display(), "sluice server listening; API at http://{addr}/api");

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
    let app = sluice_api::router(services);
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
