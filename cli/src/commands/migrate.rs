//! `sluice migrate ...`: Prefect 2.x infrastructure blocks → work pools, agent-era
//! `deployment.yaml` → `prefect.yaml` (the conversions live in `sluice_deploy::migrate`).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;
use sluice_deploy::migrate;

use super::{ApiArgs, failed, print_json, read_json_file};

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Create a work pool from a Prefect 2.x infrastructure block (Process, ECSTask, ...),
    /// as `publish_as_work_pool` does: the block's settings become template variable defaults.
    ///
    /// BLOCK.json is either a block document (`{"name", "block_type_slug", "data": {...}}`, as
    /// the API or `prefect block inspect` gives it) or the bare block data with a `type` field
    /// (`process`, `ecs-task`, `kubernetes-job`, `docker-container`).
    InfraBlock {
        block: PathBuf,
        /// The pool's name (default: the block document's name).
        #[arg(long)]
        pool: Option<String>,
        /// Print `{name, type, base_job_template, skipped}` as JSON and contact no server.
        #[arg(long)]
        dry_run: bool,
    },
    /// Turn an agent-era deployment.yaml (`prefect deployment build` output) into a prefect.yaml
    /// with one deployment entry. Reads no server.
    Deployment {
        file: PathBuf,
        /// Write the prefect.yaml here instead of stdout. (`--output` is taken: every `migrate`
        /// command inherits the global `--output table|json` of the API options.)
        #[arg(
            short = 'o',
            long = "out",
            visible_alias = "output-file",
            value_name = "FILE"
        )]
        out: Option<PathBuf>,
        /// The work pool (default: the file's work_pool_name, else the infrastructure block
        /// document's name, which is the pool `migrate infra-block` makes from it).
        #[arg(long)]
        pool: Option<String>,
    },
}

pub async fn run(api: &ApiArgs, command: MigrateCommand) -> anyhow::Result<()> {
    match command {
        MigrateCommand::InfraBlock {
            block,
            pool,
            dry_run,
        } => {
            let input = read_json_file(&block)?;
            let migrated = migrate::infra_block_to_pool(&input)
                .map_err(|e| anyhow::anyhow!("{}: {e}", block.display()))?;
            let Some(name) = pool.or_else(|| migrated.block_name.clone()) else {
                anyhow::bail!(
                    "{}: the block has no document name; give the pool a name with --pool",
                    block.display()
                );
            };
            let mut body = migrated.request(&name);
            if dry_run {
                body["skipped"] = Value::Array(
                    migrated
                        .skipped
                        .iter()
                        .map(migrate::Skipped::to_json)
                        .collect(),
                );
                return print_json(&body);
            }
            for s in &migrated.skipped {
                eprintln!("skipped {}: {}", s.field, s.reason);
            }
            let ctx = api.context()?;
            // A default that refers to a saved block must find it on this server: a pool whose
            // runs would fail to load their credentials is refused here, not at run time.
            for id in sluice_deploy::import::block_refs(&body) {
                let path = format!("block_documents/{}", sluice_client::encode(&id));
                let found = ctx
                    .client
                    .get_optional(&path)
                    .await
                    .map_err(failed(format!("reading block document {id}")))?;
                if found.is_none() {
                    anyhow::bail!(
                        "{}: the block refers to block document {id}, which this server does not have; \
                         save that block here first (or import it with `sluice import --from`)",
                        block.display()
                    );
                }
            }
            let created = match ctx.client.create_pool(&body).await {
                Ok(created) => created,
                Err(e) if e.status() == Some(409) => {
                    anyhow::bail!(
                        "pool exists: a work pool named {name:?} already exists; choose another name with --pool or delete it first"
                    );
                }
                Err(e) => return Err(failed(format!("creating work pool {name:?}"))(e)),
            };
            if ctx.json {
                print_json(&created)?;
            } else {
                println!(
                    "Created work pool {name:?} of type {:?} from the {} block.",
                    migrated.pool_type, migrated.block_type
                );
            }
        }
        MigrateCommand::Deployment { file, out, pool } => {
            let source = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let migrated = migrate::migrate_deployment(&source, pool.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for n in &migrated.not_carried {
                eprintln!("not carried over: {n}");
            }
            match out {
                Some(path) => {
                    std::fs::write(&path, &migrated.yaml)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("Wrote {}.", path.display());
                }
                None => print!("{}", migrated.yaml),
            }
        }
    }
    Ok(())
}
