//! A typed client for the API, used by the CLI (and later the worker). It speaks HTTP only, so
//! it works the same against `sluice server`, the Lambda-hosted API or a Prefect server.

pub mod deploy;
pub mod resources;
pub mod runs;
pub mod serve;
pub mod templates;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", transport_message(url, source))]
    Transport { url: String, source: reqwest::Error },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered a body that is not JSON: {source}")]
    Decode { url: String, source: reqwest::Error },
}

/// The API's base (`scheme://host[:port]/.../api`) within a request URL, for messages.
fn api_base(url: &str) -> &str {
    match url.find("/api/") {
        Some(i) => &url[..i + 4],
        None => url,
    }
}

/// What a newcomer reads when the request never got an answer: "connection refused" is nearly
/// always a server that is not running, so say so in those words.
fn transport_message(url: &str, source: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return format!(
                "connection refused — is `sluice server start` running at {}?",
                api_base(url)
            );
        }
        cause = e.source();
    }
    // reqwest's own text says only "error sending request"; the cause says why.
    let mut text = format!("cannot reach {url}: {source}");
    let mut cause = std::error::Error::source(source);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Checks an API URL the way a person writes it wrong: no scheme (`localhost:4200/api`), or
/// the server's root instead of its API (`http://127.0.0.1:4200`). Prefect's own URLs end in
/// `/api` (a server) or continue below it (`/api/accounts/...`, Prefect Cloud).
pub fn check_api_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "the API URL {url:?} has no scheme: write it as http://{url} (or https://)"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "the API URL {url:?} must start with http:// or https://, not {scheme}://"
        ));
    }
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.trim_end_matches('/');
    if !(path.ends_with("/api") || path.contains("/api/")) {
        let suggestion = format!("{}/api", url.trim_end_matches('/'));
        return Err(format!(
            "the API URL {url:?} does not name the API: Sluice's (and Prefect's) API is under \
             /api, e.g. {suggestion}"
        ));
    }
    Ok(())
}

/// A client bound to one API base URL (ending in `/api`).
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        Client {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// GET a JSON document; `Ok(None)` on 404.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                method: "GET",
                url,
                status,
                body,
            });
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|source| ClientError::Decode { url, source })
    }

    /// A variable's value by name.
    pub async fn variable(&self, name: &str) -> Result<Option<Value>, ClientError> {
        Ok(self
            .get_optional(&format!("variables/name/{}", encode(name)))
            .await?
            .and_then(|v| v.get("value").cloned()))
    }

    /// A block document's `data` by type slug and document name.
    pub async fn block_by_name(
        &self,
        slug: &str,
        name: &str,
    ) -> Result<Option<Value>, ClientError> {
        let path = format!(
            "block_types/slug/{}/block_documents/name/{}",
            encode(slug),
            encode(name)
        );
        Ok(self
            .get_optional(&path)
            .await?
            .and_then(|b| b.get("data").cloned()))
    }

    /// A block document's `data` by id.
    pub async fn block_by_id(&self, id: &str) -> Result<Option<Value>, ClientError> {
        Ok(self
            .get_optional(&format!("block_documents/{}", encode(id)))
            .await?
            .and_then(|b| b.get("data").cloned()))
    }
}

/// Percent-encodes a path segment (names may contain spaces and other reserved characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
