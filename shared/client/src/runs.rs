//! Calls a worker makes: pools, heartbeats, polling, flow-run states, logs.

use serde_json::{Value, json};

use crate::{Client, ClientError, encode};

/// What `set_state` answered.
#[derive(Debug, Clone)]
pub struct SetStateResult {
    /// `ACCEPT`, `REJECT`, `ABORT` or `WAIT`.
    pub status: String,
    /// The run's state after the call (the proposed one when accepted).
    pub state: Option<Value>,
    /// For `WAIT`: how long to wait before proposing again.
    pub delay_seconds: f64,
    /// Why the server did not accept, when it says.
    pub reason: Option<String>,
}

impl SetStateResult {
    /// The resulting state's type (`PENDING`, `RUNNING`, ...), if any.
    pub fn state_type(&self) -> Option<&str> {
        self.state.as_ref()?.get("type")?.as_str()
    }

    pub fn accepted(&self) -> bool {
        self.status == "ACCEPT"
    }
}

impl Client {
    /// A client that sends `Authorization: Bearer <key>` on every call when a key is given.
    ///
    /// # Errors
    /// A key that cannot be an HTTP header value, or a TLS backend that fails to initialise.
    pub fn with_api_key(base_url: &str, api_key: Option<&str>) -> Result<Client, String> {
        let header = api_key.map(|key| format!("Bearer {key}"));
        Client::with_authorization(base_url, header.as_deref())
            .map_err(|e| e.replace("invalid credentials", "invalid API key"))
    }

    /// A client that sends `authorization` (a whole `Authorization` header value, e.g.
    /// `Basic ...` for a Prefect server's auth string) with every request.
    pub fn with_authorization(
        base_url: &str,
        authorization: Option<&str>,
    ) -> Result<Client, String> {
        crate::check_api_url(base_url)?;
        let mut builder = reqwest::Client::builder();
        if let Some(auth) = authorization {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut value = reqwest::header::HeaderValue::from_str(auth)
                .map_err(|e| format!("invalid credentials: {e}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Client {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// DELETE; a 404 counts as done.
    pub async fn delete_path(&self, path: &str) -> Result<(), ClientError> {
        match self
            .send_json(reqwest::Method::DELETE, "DELETE", path, &Value::Null)
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a JSON body and decodes a JSON answer (`Value::Null` for an empty body).
    async fn send_json(
        &self,
        method: reqwest::Method,
        method_name: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .request(method, &url)
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
                method: method_name,
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
        // A non-JSON success body is not worth failing a worker over (e.g. a proxy's "OK").
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// POST a JSON body; the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send_json(reqwest::Method::POST, "POST", path, body)
            .await
    }

    /// PATCH a JSON body; the JSON answer (usually null: 204).
    pub async fn patch_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send_json(reqwest::Method::PATCH, "PATCH", path, body)
            .await
    }

    /// `GET /work_pools/{name}`; `None` when it does not exist.
    pub async fn read_work_pool(&self, name: &str) -> Result<Option<Value>, ClientError> {
        self.get_optional(&format!("work_pools/{}", encode(name)))
            .await
    }

    /// `POST /work_pools/` with a name and type (the server fills in the default template).
    pub async fn create_work_pool(
        &self,
        name: &str,
        pool_type: &str,
    ) -> Result<Value, ClientError> {
        self.post_json("work_pools/", &json!({ "name": name, "type": pool_type }))
            .await
    }

    /// `POST /work_pools/{pool}/workers/heartbeat`.
    pub async fn worker_heartbeat(
        &self,
        pool: &str,
        worker: &str,
        interval_seconds: u64,
    ) -> Result<(), ClientError> {
        self.post_json(
            &format!("work_pools/{}/workers/heartbeat", encode(pool)),
            &json!({ "name": worker, "heartbeat_interval_seconds": interval_seconds }),
        )
        .await
        .map(|_| ())
    }

    /// `POST /work_pools/{pool}/get_scheduled_flow_runs`: the flow runs (not their wrappers).
    /// An empty `queues` means every queue of the pool.
    pub async fn get_scheduled_flow_runs(
        &self,
        pool: &str,
        queues: &[String],
        scheduled_before: &str,
    ) -> Result<Vec<Value>, ClientError> {
        let answer = self
            .post_json(
                &format!("work_pools/{}/get_scheduled_flow_runs", encode(pool)),
                &json!({ "work_queue_names": queues, "scheduled_before": scheduled_before }),
            )
            .await?;
        Ok(answer
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.get("flow_run").cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /flow_runs/{id}`; `None` when it does not exist.
    pub async fn read_flow_run(&self, id: &str) -> Result<Option<Value>, ClientError> {
        self.get_optional(&format!("flow_runs/{}", encode(id)))
            .await
    }

    /// `POST /v2/concurrency_limits/leases/{id}/renew`: `Ok(false)` when the lease is gone
    /// (410, expired or given back).
    pub async fn renew_concurrency_lease(
        &self,
        lease_id: &str,
        seconds: f64,
    ) -> Result<bool, ClientError> {
        let path = format!("v2/concurrency_limits/leases/{}/renew", encode(lease_id));
        match self
            .post_json(&path, &json!({ "lease_duration": seconds }))
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Status { status: 410, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /flow_runs/filter` with a Prefect filter body; the matching runs.
    pub async fn filter_flow_runs(&self, body: &Value) -> Result<Vec<Value>, ClientError> {
        let answer = self.post_json("flow_runs/filter", body).await?;
        Ok(answer.as_array().cloned().unwrap_or_default())
    }

    /// `GET /deployments/{id}`; `None` when it does not exist.
    pub async fn read_deployment(&self, id: &str) -> Result<Option<Value>, ClientError> {
        self.get_optional(&format!("deployments/{}", encode(id)))
            .await
    }

    /// `PATCH /flow_runs/{id}` with the given fields.
    pub async fn update_flow_run(&self, id: &str, fields: &Value) -> Result<(), ClientError> {
        self.patch_json(&format!("flow_runs/{}", encode(id)), fields)
            .await
            .map(|_| ())
    }

    /// `POST /flow_runs/{id}/set_state` with `state` (`{"type", "name"?, "message"?}`).
    pub async fn set_flow_run_state(
        &self,
        id: &str,
        state: &Value,
        force: bool,
    ) -> Result<SetStateResult, ClientError> {
        self.propose(id, &json!({ "state": state, "force": force }))
            .await
    }

    /// A worker's claim: PENDING, accepted only while the run is still SCHEDULED (Sluice's
    /// `claim` field), so a claim made on a stale poll never restarts a finished run.
    pub async fn claim_flow_run(
        &self,
        id: &str,
        state: &Value,
    ) -> Result<SetStateResult, ClientError> {
        self.propose(
            id,
            &json!({ "state": state, "force": false, "claim": true }),
        )
        .await
    }

    async fn propose(&self, id: &str, body: &Value) -> Result<SetStateResult, ClientError> {
        let answer = self
            .post_json(&format!("flow_runs/{}/set_state", encode(id)), body)
            .await?;
        let details = answer.get("details");
        Ok(SetStateResult {
            status: answer
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            state: answer.get("state").filter(|s| !s.is_null()).cloned(),
            delay_seconds: details
                .and_then(|d| d.get("delay_seconds"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            reason: details
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// `POST /logs/` with a batch of log records.
    pub async fn create_logs(&self, logs: &[Value]) -> Result<(), ClientError> {
        if logs.is_empty() {
            return Ok(());
        }
        self.post_json("logs/", &Value::Array(logs.to_vec()))
            .await
            .map(|_| ())
    }
}
