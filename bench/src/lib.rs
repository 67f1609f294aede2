//! What the load generators share: one JSON POST with the server's answer on failure.

use anyhow::{Context, bail};
use serde_json::Value;

/// POSTs `body` as JSON; the parsed answer (Null when empty), or an error carrying the status
/// and body when the server refuses.
pub async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}
