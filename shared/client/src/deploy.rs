//! Typed calls for `sluice deploy`: the flow and deployment upserts of `prefect deploy` (§10).

use serde_json::{Value, json};

use crate::{Client, ClientError};

/// The answer of an upsert: the stored object and whether it was created (201) or updated (200).
#[derive(Debug, Clone)]
pub struct Upserted {
    pub body: Value,
    pub created: bool,
}

impl Upserted {
    /// The `id` of the stored object, if the answer carries one.
    pub fn id(&self) -> Option<&str> {
        self.body.get("id").and_then(Value::as_str)
    }
}

impl Client {
    /// POSTs `body` to `path`, keeping the status: 201 means created, any other 2xx updated.
    async fn upsert(&self, path: &str, body: &Value) -> Result<Upserted, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                method: "POST",
                url,
                status: status.as_u16(),
                body,
            });
        }
        let created = status == reqwest::StatusCode::CREATED;
        let body = resp
            .json()
            .await
            .map_err(|source| ClientError::Decode { url, source })?;
        Ok(Upserted { body, created })
    }

    /// `POST /flows/ {name}`: the flow's upsert.
    pub async fn upsert_flow(&self, name: &str) -> Result<Upserted, ClientError> {
        self.upsert("flows/", &json!({ "name": name })).await
    }

    /// `POST /deployments/`: an upsert on (flow_id, name); the body must carry `flow_id`.
    pub async fn upsert_deployment(&self, body: &Value) -> Result<Upserted, ClientError> {
        self.upsert("deployments/", body).await
    }
}
