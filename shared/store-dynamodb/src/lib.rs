//! The DynamoDB store adapter: one table, every store port, the same contract (and the same
//! conformance suite) as the SQLite adapter.
//!
//! The table layout, its indexes and which write is conditional on what are described in
//! ARCHITECTURE.md ("DynamoDB layout"); [`schema`] is the single source of the key and index
//! names, used by [`DynamoStore::ensure_table`] and mirrored by `template.yaml`.

mod artifacts;
mod block_catalog;
mod concurrency;
mod deployments;
mod error;
mod events;
mod item;
mod misc;
mod ops;
mod pools;
mod runs;
pub mod schema;
mod task_runs;

pub use ops::{Usage, item_size};

use std::sync::Arc;

use aws_sdk_dynamodb::Client;

/// Retention, in days, for items DynamoDB may expire by TTL. `None` keeps them forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Log lines expire this long after their timestamp.
    pub logs_days: Option<u32>,
    /// Runs (with their states) expire this long after they reach a final state.
    pub runs_days: Option<u32>,
    /// Events expire this long after they occurred.
    pub events_days: Option<u32>,
}

impl Retention {
    /// Reads `SLUICE_LOG_RETENTION_DAYS`, `SLUICE_RUN_RETENTION_DAYS` and
    /// `SLUICE_EVENT_RETENTION_DAYS` (unset or empty: keep).
    pub fn from_env() -> Result<Retention, String> {
        fn days(var: &str) -> Result<Option<u32>, String> {
            match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("{var} must be a whole number of days, got {v:?}")),
                _ => Ok(None),
            }
        }
        Ok(Retention {
            logs_days: days("SLUICE_LOG_RETENTION_DAYS")?,
            runs_days: days("SLUICE_RUN_RETENTION_DAYS")?,
            events_days: days("SLUICE_EVENT_RETENTION_DAYS")?,
        })
    }
}

/// The DynamoDB store. Cheap to clone: clones share the SDK client.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    table: String,
    retention: Retention,
    meter: ops::Meter,
    histories: std::sync::Mutex<runs::Histories>,
}

impl DynamoStore {
    /// A store over `table` through an existing client.
    pub fn new(client: Client, table: impl Into<String>, retention: Retention) -> DynamoStore {
        DynamoStore {
            inner: Arc::new(Inner {
                client,
                table: table.into(),
                retention,
                meter: ops::Meter::default(),
                histories: std::sync::Mutex::default(),
            }),
        }
    }

    /// A store over `table` with a client configured the SDK's standard way (region,
    /// credentials, and `AWS_ENDPOINT_URL` for an emulator or LocalStack).
    pub async fn connect(table: impl Into<String>, retention: Retention) -> DynamoStore {
        // Throttling and transient errors: the SDK's standard strategy (exponential backoff
        // with jitter) with a few more attempts than its default of 3.
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(6);
        let config = aws_config::from_env().retry_config(retry).load().await;
        DynamoStore::new(Client::new(&config), table, retention)
    }

    /// Requests and capacity units used since the store was built or [`reset_usage`] ran.
    ///
    /// [`reset_usage`]: DynamoStore::reset_usage
    pub fn usage(&self) -> Usage {
        self.inner.meter.snapshot()
    }

    pub fn reset_usage(&self) {
        self.inner.meter.reset();
    }

    pub fn table(&self) -> &str {
        &self.inner.table
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }
}
