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

/// Counts the answers a retrying call saw and gave up on.
#[derive(Debug, Default)]
pub struct Retries {
    /// 503/429 answers and connection errors that were retried.
    pub retried: std::sync::atomic::AtomicU64,
}

impl Retries {
    pub fn count(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How many times a busy answer is retried before the call fails.
pub const MAX_RETRIES: u32 = 50;

/// Like [`post`], but retries on 503 (Prefect's server on SQLite answers it for "database is
/// locked"), 429 and connection errors, as Prefect's own client does, after a short pause growing with each
/// attempt (10 ms, 20 ms, ... capped at 200 ms). Every retry is counted in `retries`; after
/// [`MAX_RETRIES`] the call fails with the last answer.
pub async fn post_retrying(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    retries: &Retries,
) -> anyhow::Result<Value> {
    let mut attempt = 0u32;
    loop {
        let resp = match http.post(url).json(body).send().await {
            Ok(resp) => resp,
            // A connection the server reset or closed (Prefect's server does under load);
            // Prefect's client retries those too. The request may have been applied.
            Err(_) if attempt < MAX_RETRIES => {
                attempt += 1;
                retries
                    .retried
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt))).await;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("POST {url}")),
        };
        let status = resp.status();
        let text = resp.text().await?;
        if status.is_success() {
            return Ok(if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)?
            });
        }
        let busy = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if !busy || attempt >= MAX_RETRIES {
            bail!("POST {url} answered {status}: {text}");
        }
        attempt += 1;
        retries
            .retried
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pause = (10 * u64::from(attempt)).min(200);
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
}

/// The `p`th percentile (nearest rank) of sorted durations; zero when empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
