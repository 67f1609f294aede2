//! Typed calls for `sluice serve` (the runner, §8.5): its poll and its pause on shutdown.

use serde_json::{Value, json};

use crate::{Client, ClientError};

impl Client {
    /// `POST /deployments/get_scheduled_flow_runs`: the SCHEDULED runs of these deployments
    /// due before `scheduled_before` (RFC 3339).
    pub async fn get_scheduled_flow_runs_for_deployments(
        &self,
        deployment_ids: &[String],
        scheduled_before: &str,
    ) -> Result<Vec<Value>, ClientError> {
        let answer = self
            .post_json(
                "deployments/get_scheduled_flow_runs",
                &json!({ "deployment_ids": deployment_ids, "scheduled_before": scheduled_before }),
            )
            .await?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }

    /// `PATCH /deployments/{id} {"paused": paused}`.
    pub async fn set_deployment_paused(&self, id: &str, paused: bool) -> Result<(), ClientError> {
        self.patch_json(
            &format!("deployments/{}", crate::encode(id)),
            &json!({ "paused": paused }),
        )
        .await
        .map(|_| ())
    }
}
