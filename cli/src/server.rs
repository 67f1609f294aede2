//! `sluice server start`: the API and the background services on the chosen store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use sluice_api::{Auth, Options};
use sluice_services::push::{self, PushSettings};
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
        #[command(flatten)]
        push: PushArgs,
        /// Days events (task-run states included) are kept on SQLite; on DynamoDB the same
        /// variable sets the items' TTL, and unset keeps them.
        #[arg(long, env = "SLUICE_EVENT_RETENTION_DAYS", default_value_t = 7)]
        event_retention_days: u32,
        /// Origins browsers may call the API from, comma-separated (`*`: any, Prefect's
        /// default; empty: none), for a UI served from another origin.
        #[arg(long, env = "SLUICE_CORS_ALLOWED_ORIGINS", default_value = "*")]
        cors_allowed_origins: String,
        /// Prefect's UI bundles, laid out as in the `prefect` package's `server` folder
        /// (`ui/`, `ui-v2/`). Default: those of the prefect package `python3` imports.
        #[arg(long, env = "SLUICE_UI_DIR", conflicts_with = "no_ui")]
        ui_dir: Option<std::path::PathBuf>,
        /// Serve the API only, without Prefect's UI.
        #[arg(long, env = "SLUICE_NO_UI")]
        no_ui: bool,
    },
}

/// Push pools (`ecs:push`, `batch:push`) from the local server.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Do not submit push runs from this server (they stay SCHEDULED).
    #[arg(long, env = "SLUICE_NO_PUSH")]
    no_push: bool,
    /// The API URL the pushed containers use to reach this server (their PREFECT_API_URL).
    #[arg(long, env = "SLUICE_PUSH_API_URL")]
    push_api_url: Option<String>,
    /// How often live push runs are checked against ECS/Batch (no EventBridge locally).
    #[arg(long, env = "SLUICE_PUSH_SWEEP_SECONDS", default_value_t = 5)]
    push_sweep_seconds: u64,
}

/// Starts the local dispatcher over the ambient AWS configuration (`AWS_REGION`, credentials,
/// `AWS_ENDPOINT_URL` for an emulator or LocalStack) and returns the services announcing to it.
fn start_push(
    services: Services,
    args: &PushArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Services, Option<tokio::task::JoinHandle<()>>) {
    if args.no_push {
        return (services, None);
    }
    // AWS configuration (region, credentials) is loaded when a push pool first needs it.
    let infra = sluice_aws::AwsPush::from_env(sluice_aws::Rates::default());
    let mut settings = PushSettings {
        template_env: std::env::vars().collect(),
        // No events locally: every sweep describes every live run.
        reconcile_after_seconds: 0,
        ..PushSettings::default()
    };
    if let Some(url) = &args.push_api_url {
        settings
            .base_env
            .insert("PREFECT_API_URL".to_owned(), url.clone());
    }
    let (queue, announced) = push::local_queue();
    let services = services.with_dispatch_queue(Arc::new(queue));
    let dispatcher = push::Dispatcher::new(services.clone(), Arc::new(infra), settings);
    let every = std::time::Duration::from_secs(args.push_sweep_seconds.max(1));
    let mut rx = stop;
    let task = tokio::spawn(push::run_local(dispatcher, announced, every, async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    (services, Some(task))
}

pub async fn run(command: ServerCommand) -> anyhow::Result<()> {
    let ServerCommand::Start {
        host,
        port,
        store,
        auth,
        push,
        event_retention_days,
        cors_allowed_origins,
        ui_dir,
        no_ui,
    } = command;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("{host}:{port} is not a valid listen address (see --host)"))?;
    // The port first: a busy port must not cost a database migration or a table creation.
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "cannot listen on {addr}: the port is already in use (another `sluice server`?); \
             choose another with --port"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
    };
    let location = store.describe();
    let settings = Settings {
        // DynamoDB expires events itself (TTL); a purge there would scan the table.
        event_retention_days: (store.backend == crate::store::Backend::Sqlite)
            .then_some(i64::from(event_retention_days.max(1))),
        ..Settings::default()
    };
    let store = store.open().await?;
    let services = Services::new(store, Arc::new(SystemClock), settings);
    services
        .install_system_block_types()
        .await
        .context("cannot install the system block types")?;
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
    let ui = if no_ui {
        tracing::info!("no UI: --no-ui");
        None
    } else {
        match crate::ui::Ui::locate(ui_dir.as_deref()) {
            Ok(ui) => {
                tracing::info!(from = %ui.origin, "Prefect's UI at http://{addr}/");
                Some(ui.with_basic_auth(auth == AuthMode::ApiKey))
            }
            // An explicit folder that holds no UI is the user's mistake; a missing prefect
            // package only means there is no UI to serve.
            Err(reason) if ui_dir.is_some() => anyhow::bail!("no UI to serve: {reason}"),
            Err(reason) => {
                tracing::info!("no UI: {reason}");
                None
            }
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (services, pusher) = start_push(services, &push, stop_rx.clone());
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
            cors_allowed_origins: sluice_api::origins(&cors_allowed_origins),
            ..Options::default()
        },
    );
    let app = match ui {
        Some(ui) => app.fallback_service(ui.router()),
        None => app,
    };
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
    if let Some(pusher) = pusher {
        pusher.await.context("the push dispatcher panicked")?;
    }
    Ok(())
}
