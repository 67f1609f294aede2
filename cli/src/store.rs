//! Where `sluice server start` and `sluice api-key` keep their data: the embedded SQLite file
//! (the local default) or a DynamoDB table (an emulator, LocalStack or a real account, reached
//! the SDK's standard way, `AWS_ENDPOINT_URL` included).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sluice_store::{SqliteStore, Store};
use sluice_store_dynamodb::{DynamoStore, Retention};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Dynamodb,
}

/// Store options (global, so they may follow a subcommand).
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where data is kept.
    #[arg(
        long = "store",
        value_name = "STORE",
        env = "SLUICE_STORE",
        value_enum,
        default_value = "sqlite",
        global = true
    )]
    pub backend: Backend,
    /// SQLite database file (created if missing). Default: the user's data directory.
    #[arg(long, env = "SLUICE_DB", global = true)]
    pub db: Option<PathBuf>,
    /// DynamoDB table (`server start` creates it with its indexes if missing; `api-key` needs it).
    #[arg(long, env = "SLUICE_TABLE", default_value = "sluice", global = true)]
    pub table: String,
}

impl StoreArgs {
    /// The SQLite file these options name.
    pub fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(SqliteStore::default_path)
    }

    /// Where the data is, for log lines and messages.
    pub fn describe(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite:{}", self.db_path().display()),
            Backend::Dynamodb => format!("dynamodb:{}", self.table),
        }
    }

    /// Opens a store that must already exist: commands that only read or manage what a server
    /// keeps (`api-key`) must not leave a new empty database or table behind a mistyped name.
    pub async fn open_existing(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.db_path();
                if !path.exists() {
                    anyhow::bail!(
                        "there is no Sluice database at {}: `sluice server start` creates it \
                         (or name another with --db)",
                        path.display()
                    );
                }
                self.open().await
            }
            Backend::Dynamodb => {
                let store = self.connect_dynamodb().await?;
                let exists = store.table_exists().await.with_context(|| {
                    format!(
                        "cannot read the DynamoDB table {} in region {}",
                        self.table,
                        store.region()
                    )
                })?;
                if !exists {
                    anyhow::bail!(
                        "the DynamoDB table {} does not exist in region {}: name the stack's \
                         table with --table (or SLUICE_TABLE) and its region with AWS_REGION",
                        self.table,
                        store.region()
                    );
                }
                Ok(Arc::new(store))
            }
        }
    }

    async fn connect_dynamodb(&self) -> anyhow::Result<DynamoStore> {
        if let Some(db) = &self.db {
            tracing::warn!(db = %db.display(), "--db is ignored with --store dynamodb");
        }
        let retention = Retention::from_env().map_err(anyhow::Error::msg)?;
        Ok(DynamoStore::connect(self.table.clone(), retention).await)
    }

    /// Opens the store, creating the SQLite file or the DynamoDB table when missing, so one
    /// command works against an empty machine or account.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.db_path();
                let store = SqliteStore::open(&path)
                    .with_context(|| format!("cannot open the database at {}", path.display()))?;
                Ok(Arc::new(store))
            }
            Backend::Dynamodb => {
                let store = self.connect_dynamodb().await?;
                store
                    .ensure_table()
                    .await
                    .with_context(|| format!("cannot prepare the DynamoDB table {}", self.table))?;
                Ok(Arc::new(store))
            }
        }
    }
}
