//! `sluice job-template render`: prints the final job configuration a worker would submit, so a
//! template author sees exactly what reaches the infrastructure.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;
use sluice_core::domain::JsonMap;
use sluice_core::templating::PrefetchedData;
use sluice_core::{job_config, schema};

#[derive(Subcommand)]
pub enum JobTemplateCommand {
    /// Render TEMPLATE (a base job template JSON file) with deployment and run job variables.
    Render {
        /// The base job template: `{"job_configuration": ..., "variables": ...}`.
        template: PathBuf,
        /// The deployment's job variables, as a JSON object.
        #[arg(long, default_value = "{}")]
        deployment_variables: String,
        /// The flow run's job variables, as a JSON object (they win over the deployment's).
        #[arg(long, default_value = "{}")]
        job_variables: String,
        /// Resolve `prefect.variables.*` and `prefect.blocks.*` references from this API.
        #[arg(long, env = "SLUICE_API_URL")]
        api_url: Option<String>,
        /// Print the templated configuration without the base-field normalisation (env values
        /// as strings, empty command as null, missing name/command/env/labels filled).
        #[arg(long)]
        raw: bool,
    },
}

fn parse_object(what: &str, text: &str) -> anyhow::Result<JsonMap> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))?;
    match value {
        Value::Object(m) => Ok(m),
        other => bail!("{what} must be a JSON object, got {other}"),
    }
}

pub async fn run(command: JobTemplateCommand) -> anyhow::Result<()> {
    let JobTemplateCommand::Render {
        template,
        deployment_variables,
        job_variables,
        api_url,
        raw,
    } = command;
    let text = std::fs::read_to_string(&template)
        .with_context(|| format!("cannot read {}", template.display()))?;
    let template_value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", template.display()))?;
    let deployment = parse_object("--deployment-variables", &deployment_variables)?;
    let run_vars = parse_object("--job-variables", &job_variables)?;
    let values = job_config::merge_deployment_and_run_variables(&deployment, &run_vars);

    // Prefect renders whatever it is given; mismatches are worth a warning, not a refusal here.
    if let Some(variables) = template_value.get("variables")
        && let Err(e) = schema::validate_job_variables(variables, &values, false)
    {
        eprintln!("warning: {e}");
    }

    let data = match api_url {
        Some(url) => {
            sluice_client::Client::new(&url)
                .template_data(&job_config::data_references(&template_value, &values))
                .await?
        }
        None => PrefetchedData::default(),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let env_lookup = |name: &str| env.get(name).cloned();
    let rendered =
        job_config::build_job_configuration(&template_value, &values, &env_lookup, &data)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = if raw {
        rendered
    } else {
        job_config::finalize_base_fields(rendered)
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
