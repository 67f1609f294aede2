//! Job variables and job configurations: the glue between the pure templating rules and the
//! stored pools, deployments, variables and blocks.

use serde_json::Value;
use sluice_core::domain::{Id, JsonMap};
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
