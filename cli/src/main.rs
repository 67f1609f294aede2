//! The `sluice` command. Thin: parse arguments, set up logging, call the libraries.

mod commands;
mod render;
mod server;
mod signals;
mod store;
mod ui;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Prefect-compatible orchestration control plane"
)]
struct Cli {
    /// Log format for structured logs.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the background services.
    Server {
        #[command(subcommand)]
        command: server::ServerCommand,
    },
    /// Work with base job templates.
    JobTemplate {
        #[command(subcommand)]
        command: render::JobTemplateCommand,
    },
    /// Work pools: create, ls, inspect, update, pause, resume, delete, preview.
    WorkPool {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::pools::WorkPoolCommand,
    },
    /// A work pool's queues.
    WorkQueue {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::queues::WorkQueueCommand,
    },
    /// Workers of a pool.
    Worker {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::workers::WorkerCommand,
    },
    /// Deployments (named FLOW/DEPLOYMENT): ls, inspect, run, pause, resume, delete.
    Deployment {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::deployments::DeploymentCommand,
    },
    /// Flow runs: ls, inspect, cancel, logs, delete.
    FlowRun {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::flow_runs::FlowRunCommand,
    },
    /// Variables: set, get, ls, unset.
    Variable {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::variables::VariableCommand,
    },
    /// Create or update deployments from a prefect.yaml.
    Deploy {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(flatten)]
        args: commands::deploy::DeployArgs,
    },
    /// Serve a deployment without a work pool: run its scheduled runs as local processes.
    Serve {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(flatten)]
        args: commands::serve::ServeArgs,
    },
    /// Migrate Prefect 2.x infrastructure blocks and agent-era deployment files.
    Migrate {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(subcommand)]
        command: commands::migrate::MigrateCommand,
    },
    /// Bring a running Prefect server's pools, queues, deployments, flows, variables, blocks
    /// and concurrency limits over to Sluice (the global --api-url/--api-key name Sluice).
    Import {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(flatten)]
        args: commands::import::ImportArgs,
    },
    /// Prefect's UI on 127.0.0.1 against a remote Sluice, the API key added by a local proxy.
    Ui {
        #[command(flatten)]
        api: commands::ApiArgs,
        #[command(flatten)]
        args: commands::ui::UiArgs,
    },
    /// API keys for `server start --auth api-key`: create, ls, delete (on the store directly).
    ApiKey {
        #[command(flatten)]
        store: store::StoreArgs,
        /// Human-readable output, or JSON.
        #[arg(long, global = true, value_enum, default_value = "table")]
        output: commands::Output,
        #[command(subcommand)]
        command: commands::api_keys::ApiKeyCommand,
    },
}

impl Command {
    /// The API connection options of a verb that talks to the API.
    fn api_args(&mut self) -> Option<&mut commands::ApiArgs> {
        match self {
            Command::WorkPool { api, .. }
            | Command::WorkQueue { api, .. }
            | Command::Worker { api, .. }
            | Command::Deployment { api, .. }
            | Command::FlowRun { api, .. }
            | Command::Variable { api, .. }
            | Command::Deploy { api, .. }
            | Command::Serve { api, .. }
            | Command::Migrate { api, .. }
            | Command::Ui { api, .. }
            | Command::Import { api, .. } => Some(api),
            Command::Server { .. } | Command::JobTemplate { .. } | Command::ApiKey { .. } => None,
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    // Usage errors exit 1 like every other failure (clap's own default is 2), so scripts
    // check one code; --help and --version still exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    init_tracing(&cli.log_format);
    let mut command = cli.command;
    if let Some(api) = command.api_args() {
        api.apply_prefect_fallbacks();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Blocking work here is SQLite (one writer, four readers) and the odd file or DNS
        // call. Tokio's default of 512 threads let a burst of requests start dozens of threads
        // that only queued on those five connections, each leaving memory in its own malloc
        // arena: the server's RSS under load went from 40 to 33 MiB with this cap, at the
        // same throughput.
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Server { command } => server::run(command).await,
            Command::JobTemplate { command } => render::run(command).await,
            Command::WorkPool { api, command } => {
                commands::pools::run(&api.context()?, command).await
            }
            Command::WorkQueue { api, command } => {
                commands::queues::run(&api.context()?, command).await
            }
            Command::Worker { api, command } => commands::workers::run(&api, command).await,
            Command::Deployment { api, command } => {
                commands::deployments::run(&api.context()?, command).await
            }
            Command::FlowRun { api, command } => {
                commands::flow_runs::run(&api.context()?, command).await
            }
            Command::Variable { api, command } => {
                commands::variables::run(&api.context()?, command).await
            }
            Command::Deploy { api, args } => commands::deploy::run(&api, args).await,
            Command::Ui { api, args } => commands::ui::run(&api, args).await,
            Command::Import { api, args } => commands::import::run(&api, args).await,
            Command::Serve { api, args } => commands::serve::run(&api, args).await,
            Command::Migrate { api, command } => commands::migrate::run(&api, command).await,
            Command::ApiKey {
                store,
                output,
                command,
            } => commands::api_keys::run(&store, output, command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
