//! Who may call the API: nobody is asked ([`Auth::None`], the local default) or every request
//! carries `Authorization: Bearer <API key>` ([`Auth::ApiKey`], the deployed API), or the key
//! as Prefect's auth string (`Authorization: Basic`, `user:key`).
//!
//! The check is a middleware on the whole `/api` router, so it runs before any extractor or
//! handler: a refused request reads no body and writes nothing. Prefect's client sends the key
//! on every request once `PREFECT_API_KEY` is set, so everything is guarded except the probes a
//! load balancer or orchestrator makes without credentials: `GET /api/health` and
//! `GET /api/ready` (the paths Prefect's own server leaves open when it requires credentials).
//! Unknown paths are guarded too, so an anonymous caller learns nothing about the routes.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_services::{ApiKeyCache, Services};

use crate::error::ApiError;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Auth {
    /// Every request is served (a local server on a loopback address).
    #[default]
    None,
    /// Every request but the health probes needs `Authorization: Bearer <API key>` naming a key
    /// in the store; anything else is answered 401.
    ApiKey,
}

impl FromStr for Auth {
    type Err = String;

    /// `none` or `api-key`, the values of `SLUICE_AUTH` and `--auth`.
    fn from_str(s: &str) -> Result<Auth, String> {
        match s.trim() {
            "none" => Ok(Auth::None),
            "api-key" => Ok(Auth::ApiKey),
            other => Err(format!(
                "unknown auth mode {other:?}: expected \"none\" or \"api-key\""
            )),
        }
    }
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "none",
            Auth::ApiKey => "api-key",
        })
    }
}

/// What the API-key middleware shares across requests.
#[derive(Clone)]
pub(crate) struct KeyCheck {
    pub(crate) services: Services,
    pub(crate) cache: Arc<ApiKeyCache>,
}

/// Paths (inside `/api`) served without a key: probes that carry no credentials, and the
/// events WebSockets, whose clients authenticate in the socket's first message (Prefect's
/// client sends no header there unless an auth string is set).
fn is_exempt(req: &Request) -> bool {
    let probe = matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(req.uri().path(), "/health" | "/ready");
    let socket = *req.method() == Method::GET
        && matches!(req.uri().path(), "/events/in" | "/events/out")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    probe || socket
}

impl KeyCheck {
    /// Whether `token` is a stored API key.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<bool, ApiError> {
        if !sluice_core::api_keys::is_well_formed(token) {
            return Ok(false);
        }
        Ok(self
            .services
            .authenticate_cached(token, &self.cache)
            .await?
            .is_some())
    }
}

/// Why a request was refused; the message is the answer's `detail`.
enum Refusal {
    Missing,
    Malformed,
    NotAKey,
    Unknown,
}

impl Refusal {
    fn detail(&self) -> &'static str {
        match self {
            Refusal::Missing => {
                "Not authenticated: the Authorization header is missing; send 'Authorization: Bearer <API key>'."
            }
            Refusal::Malformed => {
                "Malformed Authorization header: expected 'Bearer <API key>' (or Basic with the key as the password)."
            }
            Refusal::NotAKey => "Unknown API key: Sluice API keys start with 'sluice_'.",
            Refusal::Unknown => "Unknown API key.",
        }
    }

    fn into_response(self) -> Response {
        tracing::debug!(reason = self.detail(), "refused an unauthenticated request");
        let mut resp =
            ApiError::Detail(StatusCode::UNAUTHORIZED, self.detail().to_owned()).into_response();
        // RFC 6750: a 401 names the scheme the client should use.
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

/// The bearer token of the request, or why there is none.
fn bearer_token(req: &Request) -> Result<String, Refusal> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Missing)?;
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    key_from_authorization(value).ok_or(Refusal::Malformed)
}

/// The API key an `Authorization` header value carries: `Bearer <key>`, or `Basic` with
/// Prefect's auth string (`PREFECT_API_AUTH_STRING`, `user:key` or the key alone), which is how
/// the same setting also authenticates the events socket. `None` when it is malformed.
pub fn key_from_authorization(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    // The token is one unbroken word.
    if token.is_empty() || token.contains(char::is_whitespace) {
        return None;
    }
    // The scheme is case-insensitive (RFC 7235).
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        key_from_auth_string(&text)
    } else {
        None
    }
}

/// The key in an auth string: the part after the last `:`, or the whole string.
pub fn key_from_auth_string(auth_string: &str) -> Option<String> {
    let key = auth_string.rsplit(':').next().unwrap_or_default();
    (!key.is_empty()).then(|| key.to_owned())
}

/// The [`Auth::ApiKey`] middleware. An accepted request carries its [`sluice_core::domain::ApiKey`]
/// in its extensions, for handlers that want to know who calls.
pub(crate) async fn require_api_key(
    State(check): State<KeyCheck>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_exempt(&req) {
        return next.run(req).await;
    }
    let token = match bearer_token(&req) {
        Ok(token) => token,
        Err(refusal) => return refusal.into_response(),
    };
    if !sluice_core::api_keys::is_well_formed(&token) {
        return Refusal::NotAKey.into_response();
    }
    match check
        .services
        .authenticate_cached(&token, &check.cache)
        .await
    {
        Ok(Some(key)) => {
            req.extensions_mut().insert(key);
            next.run(req).await
        }
        Ok(None) => Refusal::Unknown.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn with_header(value: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/work_pools/");
        if let Some(v) = value {
            b = b.header(header::AUTHORIZATION, v);
        }
        b.body(Body::empty()).expect("a request")
    }

    #[test]
    fn bearer_tokens() {
        assert!(matches!(
            bearer_token(&with_header(None)),
            Err(Refusal::Missing)
        ));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Token sluice_x",
            "sluice_x",
        ] {
            assert!(
                matches!(
                    bearer_token(&with_header(Some(bad))),
                    Err(Refusal::Malformed)
                ),
                "{bad:?}"
            );
        }
        for (ok, want) in [
            ("Bearer sluice_x", "sluice_x"),
            ("bearer sluice_x", "sluice_x"),
            ("BEARER   sluice_x ", "sluice_x"),
            // Prefect's auth string, `user:key` or the key alone, base64 in Basic.
            ("Basic dXNlcjpzbHVpY2VfeA==", "sluice_x"),
            ("basic c2x1aWNlX3g=", "sluice_x"),
        ] {
            assert_eq!(
                bearer_token(&with_header(Some(ok))).ok().as_deref(),
                Some(want),
                "{ok:?}"
            );
        }
        let twice = Request::builder()
            .header(header::AUTHORIZATION, "Bearer a")
            .header(header::AUTHORIZATION, "Bearer b")
            .body(Body::empty())
            .expect("a request");
        assert!(matches!(bearer_token(&twice), Err(Refusal::Malformed)));
    }

    #[test]
    fn auth_modes_parse_and_print() {
        for mode in [Auth::None, Auth::ApiKey] {
            assert_eq!(mode.to_string().parse::<Auth>(), Ok(mode));
        }
        assert!("apikey".parse::<Auth>().is_err());
        assert_eq!(Auth::default(), Auth::None);
    }
}
