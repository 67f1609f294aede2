//! Job variables and job configurations: the glue between the pure templating rules and the
//! stored pools, deployments, variables and blocks.

use serde_json::Value;
use sluice_core::domain::{FlowRun, Id, JsonMap};
use sluice_core::{job_config, schema};

use crate::Services;
use crate::error::{Result, ServiceError};

impl Services {
    /// Checks a deployment's job variables against its pool's schema, `required` not enforced
    /// (Prefect's rule on deployment create/update).
    pub(crate) fn validate_deployment_job_variables(
        &self,
        base_job_template: &Value,
        variables: &JsonMap,
    ) -> Result<()> {
        let schema = base_job_template
            .get("variables")
            .cloned()
            .unwrap_or(Value::Null);
        if schema.is_null() {
            return Ok(());
        }
        schema::validate_job_variables(&schema, variables, false)
            .map_err(|e| ServiceError::Invalid(format!("Error creating deployment: {e}")))
    }

    /// Checks a run's job variables over its deployment's, with `required` enforced (Prefect's
    /// rule on create_flow_run and on PATCH of a run's job variables).
    pub(crate) async fn validate_run_job_variables(
        &self,
        deployment_id: Id,
        run_variables: &JsonMap,
    ) -> Result<()> {
        let Some(deployment) = self.store.read_deployment(deployment_id).await? else {
            return Ok(());
        };
        let Some(pool_name) = &deployment.work_pool_name else {
            return Ok(());
        };
        let Some(pool) = self.store.read_work_pool_by_name(pool_name).await? else {
            return Ok(());
        };
        let schema = pool
            .base_job_template
            .get("variables")
            .cloned()
            .unwrap_or(Value::Null);
        if schema.is_null() {
            return Ok(());
        }
        let merged = job_config::merge_deployment_and_run_variables(
            &deployment.job_variables,
            run_variables,
        );
        schema::validate_job_variables(&schema, &merged, true)
            .map_err(|e| ServiceError::Invalid(format!("Error creating flow run: {e}")))
    }
}

/// Renders the job configuration a worker (or the push dispatcher) would submit for `run`:
/// pool template defaults < deployment job variables < run job variables, with `prefect.*`
/// references resolved from the store.
pub async fn render_for_run(services: &Services, run: &FlowRun) -> Result<Value> {
    let pool_name = run
        .work_pool_name
        .clone()
        .ok_or_else(|| ServiceError::BadRequest("flow run has no work pool".to_owned()))?;
    let pool = services.read_work_pool(&pool_name).await?;
    let deployment_vars = match run.deployment_id {
        Some(id) => services
            .store
            .read_deployment(id)
            .await?
            .map(|d| d.job_variables)
            .unwrap_or_default(),
        None => JsonMap::new(),
    };
    let run_vars = run.job_variables.clone().unwrap_or_default();
    let values = job_config::merge_deployment_and_run_variables(&deployment_vars, &run_vars);
    let data = StoreData::load(services, &pool.base_job_template, &values).await?;
    let no_env = |_: &str| -> Option<String> { None };
    job_config::build_job_configuration(&pool.base_job_template, &values, &no_env, &data)
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Blocks and variables a template refers to, fetched up front because the templating rules
/// are pure and cannot look anything up themselves.
pub(crate) struct StoreData {
    blocks_by_id: std::collections::HashMap<String, Value>,
    blocks_by_name: std::collections::HashMap<(String, String), Value>,
    variables: std::collections::HashMap<String, Value>,
}

impl StoreData {
    pub(crate) async fn load(
        services: &Services,
        template: &Value,
        values: &JsonMap,
    ) -> Result<StoreData> {
        let mut data = StoreData {
            blocks_by_id: Default::default(),
            blocks_by_name: Default::default(),
            variables: Default::default(),
        };
        let everything = serde_json::json!([template, values]);
        for reference in sluice_core::templating::find_block_references(&everything) {
            match reference {
                sluice_core::templating::BlockRef::ById(id) => {
                    if let Ok(uuid) = id.parse::<Id>()
                        && let Some(doc) = services.store.read_block_document(uuid).await?
                    {
                        data.blocks_by_id.insert(id, doc.data);
                    }
                }
                sluice_core::templating::BlockRef::ByName { slug, name } => {
                    if let Some(doc) = services
                        .store
                        .read_block_document_by_name(&slug, &name)
                        .await?
                    {
                        data.blocks_by_name.insert((slug, name), doc.data);
                    }
                }
            }
        }
        for name in sluice_core::templating::find_variable_references(&everything) {
            if let Some(v) = services.store.read_variable_by_name(&name).await? {
                data.variables.insert(name, v.value);
            }
        }
        Ok(data)
    }
}

impl sluice_core::templating::TemplateData for StoreData {
    fn block_by_id(&self, id: &str) -> Option<Value> {
        self.blocks_by_id.get(id).cloned()
    }

    fn block_by_name(&self, slug: &str, name: &str) -> Option<Value> {
        self.blocks_by_name
            .get(&(slug.to_owned(), name.to_owned()))
            .cloned()
    }

    fn variable(&self, name: &str) -> Option<Value> {
        self.variables.get(name).cloned()
    }
}
