//! Typed calls for the CLI resource verbs: pools, queues, workers, deployments, flow runs, variables.
//!
//! Answers stay `serde_json::Value` on purpose: the CLI's `--output json` prints the API's JSON
//! exactly, and Sluice and Prefect servers add fields over time that a struct would drop.
//! A missing resource is `ClientError::Status` with status 404 (see [`ClientError::is_not_found`]).

use serde_json::{Value, json};

use crate::{Client, ClientError, encode};

impl ClientError {
    /// The HTTP status the server answered, if it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The server's own explanation: validation messages, else FastAPI's `detail`, else the
    /// raw body.
    pub fn detail(&self) -> Option<String> {
        let ClientError::Status { body, .. } = self else {
            return None;
        };
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        // Validation errors (422) carry their messages in `exception_detail[].msg`.
        let messages: Vec<&str> = parsed
            .as_ref()
            .and_then(|v| v.get("exception_detail"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("msg").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if !messages.is_empty() {
            return Some(messages.join("; "));
        }
        Some(match parsed.as_ref().and_then(|v| v.get("detail")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => body.clone(),
        })
    }
}

fn method_name(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PATCH => "PATCH",
        reqwest::Method::DELETE => "DELETE",
        reqwest::Method::PUT => "PUT",
        _ => "REQUEST",
    }
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

impl Client {
    /// One request; the JSON answer, `Value::Null` for an empty (204) body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let name = method_name(&method);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                method: name,
                url,
                status: status.as_u16(),
                body,
            });
        }
        let bytes = resp.bytes().await.map_err(|source| ClientError::Decode {
            url: url.clone(),
            source,
        })?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        // Not JSON from a success answer is a server we do not understand: say so, don't guess.
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Status {
            method: name,
            url,
            status: status.as_u16(),
            body: format!("answer is not JSON: {e}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call(reqwest::Method::DELETE, path, None)
            .await
            .map(|_| ())
    }

    // ---- work pools ------------------------------------------------------------------------

    /// `POST /work_pools/` with a full create body (`name`, `type`, template, ...).
    pub async fn create_pool(&self, body: &Value) -> Result<Value, ClientError> {
        self.post("work_pools/", body).await
    }

    pub async fn list_work_pools(&self) -> Result<Vec<Value>, ClientError> {
        self.post("work_pools/filter", &json!({})).await.map(array)
    }

    pub async fn work_pool(&self, name: &str) -> Result<Value, ClientError> {
        self.get(&format!("work_pools/{}", encode(name))).await
    }

    /// `PATCH /work_pools/{name}` with the fields to change.
    pub async fn update_work_pool(&self, name: &str, fields: &Value) -> Result<(), ClientError> {
        self.patch(&format!("work_pools/{}", encode(name)), fields)
            .await
            .map(|_| ())
    }

    pub async fn delete_work_pool(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("work_pools/{}", encode(name))).await
    }

    /// `GET /collections/views/aggregate-worker-metadata`: `{collection: {type: entry}}`.
    pub async fn worker_metadata(&self) -> Result<Value, ClientError> {
        self.get("collections/views/aggregate-worker-metadata")
            .await
    }

    /// `POST /work_pools/{name}/get_scheduled_flow_runs` before `scheduled_before` (RFC 3339):
    /// the API's wrappers (`{work_pool_id, work_queue_id, flow_run}`).
    pub async fn pool_scheduled_runs(
        &self,
        name: &str,
        scheduled_before: &str,
    ) -> Result<Vec<Value>, ClientError> {
        self.post(
            &format!("work_pools/{}/get_scheduled_flow_runs", encode(name)),
            &json!({ "scheduled_before": scheduled_before }),
        )
        .await
        .map(array)
    }

    // ---- work queues -----------------------------------------------------------------------

    pub async fn create_work_queue(&self, pool: &str, body: &Value) -> Result<Value, ClientError> {
        self.post(&format!("work_pools/{}/queues", encode(pool)), body)
            .await
    }

    pub async fn list_work_queues(&self, pool: &str) -> Result<Vec<Value>, ClientError> {
        self.post(
            &format!("work_pools/{}/queues/filter", encode(pool)),
            &json!({}),
        )
        .await
        .map(array)
    }

    pub async fn work_queue(&self, pool: &str, name: &str) -> Result<Value, ClientError> {
        self.get(&format!(
            "work_pools/{}/queues/{}",
            encode(pool),
            encode(name)
        ))
        .await
    }

    pub async fn update_work_queue(
        &self,
        pool: &str,
        name: &str,
        fields: &Value,
    ) -> Result<(), ClientError> {
        self.patch(
            &format!("work_pools/{}/queues/{}", encode(pool), encode(name)),
            fields,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_work_queue(&self, pool: &str, name: &str) -> Result<(), ClientError> {
        self.delete(&format!(
            "work_pools/{}/queues/{}",
            encode(pool),
            encode(name)
        ))
        .await
    }

    // ---- workers ---------------------------------------------------------------------------

    pub async fn list_workers(&self, pool: &str) -> Result<Vec<Value>, ClientError> {
        self.post(
            &format!("work_pools/{}/workers/filter", encode(pool)),
            &json!({}),
        )
        .await
        .map(array)
    }

    // ---- flows and deployments -------------------------------------------------------------

    /// `POST /flows/filter` with a filter body (`{}` for all).
    pub async fn list_flows(&self, filter: &Value) -> Result<Vec<Value>, ClientError> {
        self.post("flows/filter", filter).await.map(array)
    }

    /// `POST /deployments/filter` with a filter body (`{}` for all).
    pub async fn list_deployments(&self, filter: &Value) -> Result<Vec<Value>, ClientError> {
        self.post("deployments/filter", filter).await.map(array)
    }

    /// `GET /deployments/name/{flow}/{deployment}`.
    pub async fn deployment_by_name(
        &self,
        flow: &str,
        deployment: &str,
    ) -> Result<Value, ClientError> {
        self.get(&format!(
            "deployments/name/{}/{}",
            encode(flow),
            encode(deployment)
        ))
        .await
    }

    /// `POST /deployments/{id}/create_flow_run` (`parameters`, `job_variables`, ...).
    pub async fn create_deployment_run(
        &self,
        id: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.post(&format!("deployments/{}/create_flow_run", encode(id)), body)
            .await
    }

    pub async fn pause_deployment(&self, id: &str) -> Result<(), ClientError> {
        self.post(
            &format!("deployments/{}/pause_deployment", encode(id)),
            &json!({}),
        )
        .await
        .map(|_| ())
    }

    pub async fn resume_deployment(&self, id: &str) -> Result<(), ClientError> {
        self.post(
            &format!("deployments/{}/resume_deployment", encode(id)),
            &json!({}),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_deployment(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("deployments/{}", encode(id))).await
    }

    // ---- flow runs and logs ----------------------------------------------------------------

    /// `POST /flow_runs/filter` with a Prefect filter body.
    pub async fn list_flow_runs(&self, filter: &Value) -> Result<Vec<Value>, ClientError> {
        self.post("flow_runs/filter", filter).await.map(array)
    }

    pub async fn flow_run(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("flow_runs/{}", encode(id))).await
    }

    /// `POST /flow_runs/{id}/set_state`: the raw orchestration answer (`status`, `state`,
    /// `details`), so the caller decides what a REJECT or ABORT means for it.
    pub async fn propose_flow_run_state(
        &self,
        id: &str,
        state: &Value,
    ) -> Result<Value, ClientError> {
        self.post(
            &format!("flow_runs/{}/set_state", encode(id)),
            &json!({ "state": state }),
        )
        .await
    }

    pub async fn delete_flow_run(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("flow_runs/{}", encode(id))).await
    }

    /// `POST /logs/filter` with a Prefect log filter body.
    pub async fn filter_logs(&self, filter: &Value) -> Result<Vec<Value>, ClientError> {
        self.post("logs/filter", filter).await.map(array)
    }

    // ---- variables -------------------------------------------------------------------------

    /// `POST /variables/`; a 409 means the name is taken.
    pub async fn create_variable(&self, name: &str, value: &Value) -> Result<Value, ClientError> {
        self.post("variables/", &json!({ "name": name, "value": value }))
            .await
    }

    /// `PATCH /variables/name/{name}` with a new value.
    pub async fn update_variable(&self, name: &str, value: &Value) -> Result<(), ClientError> {
        self.patch(
            &format!("variables/name/{}", encode(name)),
            &json!({ "value": value }),
        )
        .await
        .map(|_| ())
    }

    /// The whole variable document (`id`, `name`, `value`, `tags`, ...).
    pub async fn variable_record(&self, name: &str) -> Result<Value, ClientError> {
        self.get(&format!("variables/name/{}", encode(name))).await
    }

    pub async fn list_variables(&self) -> Result<Vec<Value>, ClientError> {
        self.post("variables/filter", &json!({})).await.map(array)
    }

    pub async fn delete_variable(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("variables/name/{}", encode(name)))
            .await
    }
}
