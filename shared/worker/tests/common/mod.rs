//! What the worker's test binaries share: the real API on a loopback port over a fresh SQLite
//! file, and a worker running in the background until told to stop.

use std::sync::Arc;

use sluice_services::{Services, Settings, SystemClock};
use sluice_store::SqliteStore;
use sluice_worker::{WorkerOptions, WorkerReport, run};
use tokio::sync::oneshot;

pub struct Api {
    pub url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Api {
    pub async fn start() -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open sqlite");
        let services = Services::new(Arc::new(store), Arc::new(SystemClock), Settings::default());
        let app = sluice_api::router(services);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Api {
            url: format!("http://{addr}/api"),
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }
}

/// Starts a worker in the background; send on the sender to shut it down.
pub fn spawn_worker(
    opts: WorkerOptions,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<WorkerReport>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(run(opts, async move {
        let _ = rx.await;
    }));
    (tx, handle)
}

/// `sh -c 'SCRIPT'`: a job command is split into words, not run by a shell, so a test that
/// wants `;`, `>>` or `$VARIABLES` asks for a shell itself, as a Prefect user would.
pub fn shell(script: &str) -> String {
    format!("sh -c '{}'", script.replace('\'', r"'\''"))
}
