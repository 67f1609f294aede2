//! Prefect's own UI, served next to the API: the bundles shipped inside the `prefect` package
//! (`server/ui` is the v1 UI, `server/ui-v2` the v2 UI), as Prefect's server serves them: v1 at
//! `/`, v2 at `/v2`, both reading `/ui-settings`, and a browser that opens `/` sent to the
//! default UI (v2) unless its `prefect_ui_version` cookie chose the other.
//!
//! `sluice server start` mounts this beside its own API; `sluice ui` mounts it beside a proxy to
//! a remote API (see [`proxy`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

/// Where Prefect's build leaves the base path the bundle is served under.
const BASE_PLACEHOLDER: &str = "/PREFECT_UI_SERVE_BASE_REPLACE_PLACEHOLDER";
/// The cookie the UIs set when a user switches between them.
const VERSION_COOKIE: &str = "prefect_ui_version";
/// The v2 UI's path prefix; v1 is at the root.
const V2_BASE: &str = "/v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// One UI's files, in memory, with the base-path placeholder already replaced.
struct Bundle {
    files: HashMap<String, (axum::body::Bytes, &'static str)>,
}

impl Bundle {
    fn load(dir: &Path, base: &str) -> anyhow::Result<Bundle> {
        let mut files = HashMap::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            let entries = std::fs::read_dir(&folder)
                .with_context(|| format!("cannot read {}", folder.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(dir)
                    .context("a file outside the bundle")?
                    .to_string_lossy()
                    .replace('\\', "/");
                let raw = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mime = mime_guess::from_path(&path).first_raw().unwrap_or(
                    if relative.ends_with(".webmanifest") {
                        "application/manifest+json"
                    } else {
                        "application/octet-stream"
                    },
                );
                let textual = [".html", ".js", ".css", ".json", ".txt", ".webmanifest"]
                    .iter()
                    .any(|ext| relative.ends_with(ext));
                let body = match String::from_utf8(raw) {
                    Ok(text) if textual => text.replace(BASE_PLACEHOLDER, base).into_bytes(),
                    Ok(text) => text.into_bytes(),
                    Err(e) => e.into_bytes(),
                };
                files.insert(relative, (axum::body::Bytes::from(body), mime));
            }
        }
        if !files.contains_key("index.html") {
            anyhow::bail!("{} holds no index.html", dir.display());
        }
        Ok(Bundle { files })
    }

    /// The file at `path` (relative to the bundle), or the single-page app's `index.html` for
    /// a page path; a missing asset is a 404, not the page.
    fn serve(&self, path: &str, head: bool) -> Response {
        let path = path.trim_start_matches('/');
        let (found, name) = match self.files.get(path) {
            Some(file) => (file, path),
            None if path.starts_with("assets/") || path.starts_with("ico/") => {
                return (StatusCode::NOT_FOUND, "Not Found").into_response();
            }
            None => (&self.files["index.html"], "index.html"),
        };
        let (body, mime) = found;
        // Assets carry a content hash in their names; the page itself must be re-read so a new
        // bundle's asset names are picked up.
        let cache = if name.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let mut response = if head {
            Response::new(Body::empty())
        } else {
            Response::new(Body::from(body.clone()))
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        response
    }
}

/// The UIs found, and what `/ui-settings` says about them.
pub struct Ui {
    v1: Option<Bundle>,
    v2: Option<Bundle>,
    /// Whether the API wants Prefect's auth string (`--auth api-key`): the UI then asks for it
    /// and sends it as `Authorization: Basic`, which Sluice accepts as an API key.
    basic_auth: bool,
    /// Where the folder came from, for the start-up line.
    pub origin: String,
}

impl Ui {
    /// Loads the bundles in `dir`, laid out as in the `prefect` package's `server` folder
    /// (`ui/` for v1, `ui-v2/` for v2).
    pub fn load(dir: &Path, origin: String) -> anyhow::Result<Ui> {
        let v1_dir = dir.join("ui");
        let v2_dir = dir.join("ui-v2");
        let v1 = v1_dir
            .join("index.html")
            .is_file()
            .then(|| Bundle::load(&v1_dir, ""))
            .transpose()?;
        let v2 = v2_dir
            .join("index.html")
            .is_file()
            .then(|| Bundle::load(&v2_dir, V2_BASE))
            .transpose()?;
        if v1.is_none() && v2.is_none() {
            anyhow::bail!(
                "{} holds neither ui/index.html nor ui-v2/index.html (Prefect's UI bundles, \
                 as in the prefect package's server folder)",
                dir.display()
            );
        }
        Ok(Ui {
            v1,
            v2,
            basic_auth: false,
            origin,
        })
    }

    /// Finds the UI: `--ui-dir` when given, otherwise the `prefect` package `python3` (or
    /// `python`) imports. `Err` says why there is none.
    pub fn locate(ui_dir: Option<&Path>) -> Result<Ui, String> {
        if let Some(dir) = ui_dir {
            return Ui::load(dir, format!("--ui-dir {}", dir.display()))
                .map_err(|e| format!("{e:#}"));
        }
        let mut reasons = Vec::new();
        for python in ["python3", "python"] {
            match prefect_server_dir(python) {
                Ok(dir) => {
                    return Ui::load(&dir, format!("the prefect package of `{python}`"))
                        .map_err(|e| format!("{e:#}"));
                }
                Err(reason) => reasons.push(reason),
            }
        }
        Err(format!(
            "{}; install prefect (`pip install prefect`) or pass --ui-dir",
            reasons.join("; ")
        ))
    }

    pub fn with_basic_auth(mut self, on: bool) -> Ui {
        self.basic_auth = on;
        self
    }

    fn available(&self) -> Vec<&'static str> {
        let mut versions = Vec::new();
        if self.v1.is_some() {
            versions.push("v1");
        }
        if self.v2.is_some() {
            versions.push("v2");
        }
        versions
    }

    /// Prefect 3.9's default UI is v2, when present.
    fn default_version(&self) -> Version {
        if self.v2.is_some() {
            Version::V2
        } else {
            Version::V1
        }
    }

    fn bundle(&self, version: Version) -> Option<&Bundle> {
        match version {
            Version::V1 => self.v1.as_ref(),
            Version::V2 => self.v2.as_ref(),
        }
    }

    /// A router that answers every path it is given with the UI; mount it as the fallback of
    /// a router that serves `/api`.
    pub fn router(self) -> Router {
        Router::new().fallback(serve).with_state(Arc::new(self))
    }
}

/// The folder holding the UI bundles of the `prefect` package `python` would import, found
/// without importing it (which takes seconds).
fn prefect_server_dir(python: &str) -> Result<PathBuf, String> {
    let script = "import importlib.util as u; s = u.find_spec('prefect'); \
                  print(s.submodule_search_locations[0] if s else '')";
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|e| format!("cannot run `{python}`: {e}"))?;
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() {
        return Err(format!("`{python}` failed to look for the prefect package"));
    }
    if printed.is_empty() {
        return Err(format!("`{python}` has no prefect package"));
    }
    Ok(Path::new(&printed).join("server"))
}

/// A browser navigating to a page, as Prefect tells it apart from a script's fetch.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-mode") == Some("navigate")
        || matches!(get("sec-fetch-dest"), Some("document" | "iframe"))
    {
        return true;
    }
    get("accept").is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
}

fn cookie_version(headers: &HeaderMap) -> Option<Version> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == VERSION_COOKIE)
        .and_then(|(_, value)| match value {
            "v1" => Some(Version::V1),
            "v2" => Some(Version::V2),
            _ => None,
        })
}

/// The API address the UI should call: this origin's `/api`, as the browser reached it.
fn api_url(headers: &HeaderMap) -> String {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or("127.0.0.1");
    let scheme = get("x-forwarded-proto").unwrap_or("http");
    format!("{scheme}://{host}/api")
}

async fn serve(State(ui): State<Arc<Ui>>, request: Request) -> Response {
    let (method, uri, headers) = (
        request.method().clone(),
        request.uri().clone(),
        request.headers().clone(),
    );
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response();
    }
    let path = uri.path();
    if path == "/ui-settings" {
        return axum::Json(json!({
            "api_url": api_url(&headers),
            "csrf_enabled": false,
            "auth": ui.basic_auth.then_some("BASIC"),
            "flags": [],
            "default_ui": ui.default_version().name(),
            "available_uis": ui.available(),
            "v1_base_url": ui.v1.is_some().then_some("/"),
            "v2_base_url": ui.v2.is_some().then_some(V2_BASE),
        }))
        .into_response();
    }
    let (version, relative) = match path.strip_prefix(V2_BASE) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            (Version::V2, if rest.is_empty() { "/" } else { rest })
        }
        _ => (Version::V1, path),
    };
    let head = method == Method::HEAD;
    if is_navigation(&method, &headers) {
        // Prefect's rule: the neutral entry `/` (and any v2 page when v2 is missing) goes to
        // the UI the browser chose last, or the default one.
        let goes_elsewhere = match version {
            Version::V2 => ui.v2.is_none(),
            Version::V1 => relative == "/",
        };
        if goes_elsewhere {
            let preferred = cookie_version(&headers)
                .filter(|v| ui.bundle(*v).is_some())
                .unwrap_or_else(|| ui.default_version());
            if preferred != version {
                return Redirect::temporary(&target(preferred, relative, &uri)).into_response();
            }
        }
    }
    match ui.bundle(version) {
        Some(bundle) => bundle.serve(relative, head),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

/// The same page in the other UI, query kept.
fn target(version: Version, relative: &str, uri: &Uri) -> String {
    let path = match version {
        Version::V1 => relative.to_owned(),
        Version::V2 if relative == "/" => format!("{V2_BASE}/"),
        Version::V2 => format!("{V2_BASE}{relative}"),
    };
    match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    }
}

/// `sluice ui`'s `/api`: every request forwarded to a remote Sluice with the API key added, so
/// the key stays in this process and never reaches the browser.
pub mod proxy {
    use super::*;

    /// Headers that belong to one hop, or that this proxy sets itself.
    const NOT_FORWARDED: [&str; 9] = [
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "content-length",
        "authorization",
    ];

    pub struct Upstream {
        pub client: reqwest::Client,
        /// The remote API's address, ending in `/api`.
        pub api_url: String,
        pub api_key: Option<String>,
    }

    pub fn router(upstream: Upstream) -> Router {
        Router::new()
            .route("/api", axum::routing::any(forward))
            .route("/api/{*rest}", axum::routing::any(forward))
            .with_state(Arc::new(upstream))
    }

    async fn forward(State(up): State<Arc<Upstream>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let rest = parts.uri.path().strip_prefix("/api").unwrap_or("");
        let mut url = format!("{}{rest}", up.api_url.trim_end_matches('/'));
        if let Some(query) = parts.uri.query() {
            url.push('?');
            url.push_str(query);
        }
        let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
            Ok(body) => body,
            Err(e) => return bad_gateway(&format!("cannot read the request body: {e}")),
        };
        let mut outgoing = up.client.request(parts.method, &url).body(body);
        for (name, value) in &parts.headers {
            if !NOT_FORWARDED.contains(&name.as_str()) {
                outgoing = outgoing.header(name, value);
            }
        }
        if let Some(key) = &up.api_key {
            outgoing = outgoing.bearer_auth(key);
        }
        let answer = match outgoing.send().await {
            Ok(answer) => answer,
            Err(e) => return bad_gateway(&format!("cannot reach {}: {e}", up.api_url)),
        };
        let status = answer.status();
        let mut headers = HeaderMap::new();
        for (name, value) in answer.headers() {
            if !NOT_FORWARDED.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        match answer.bytes().await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Err(e) => bad_gateway(&format!("{} broke off its answer: {e}", up.api_url)),
        }
    }

    /// Prefect's error shape, so the UI shows why.
    fn bad_gateway(detail: &str) -> Response {
        tracing::warn!("{detail}");
        (
            StatusCode::BAD_GATEWAY,
            axum::Json(json!({ "detail": detail })),
        )
            .into_response()
    }
}
