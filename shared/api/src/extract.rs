//! Extractors whose rejections use the house error shape, so a malformed body or path gets the
//! same 422 a Prefect server gives, with the location of the problem.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, Invalid};

/// A JSON body parsed into `T`. An empty body parses as `{}` (Prefect's action bodies are all
/// optional-field objects and clients often send nothing).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::Detail(e.status(), "Request body is too large.".to_owned())
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        parse_body(&bytes).map(Body)
    }
}

pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let raw: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::Validation(Box::new(Invalid {
                location: vec!["body".into(), e.column().into()],
                message: format!("JSON decode error: {e}"),
                kind: "json_invalid",
                body: Value::String(String::from_utf8_lossy(bytes).into_owned()),
            }))
        })?
    };
    serde_path_to_error::deserialize(&raw).map_err(|e| {
        let mut location: Vec<Value> = vec!["body".into()];
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => location.push((*index).into()),
                serde_path_to_error::Segment::Map { key } => location.push(key.clone().into()),
                serde_path_to_error::Segment::Enum { variant } => {
                    location.push(variant.clone().into())
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        // serde reports a missing field at its parent; FastAPI locates it at the field itself
        // (`["body", "name"]`, type `missing`), and clients read the location.
        let mut kind = "value_error";
        if let Some(field) = e
            .inner()
            .to_string()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            location.push(field.to_owned().into());
            kind = "missing";
        }
        let path = location
            .iter()
            .skip(1)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".");
        let message = if path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        };
        ApiError::Validation(Box::new(Invalid {
            location,
            message,
            kind,
            body: raw.clone(),
        }))
    })
}

/// A UUID path parameter; a malformed one is a 422 naming the parameter, as FastAPI answers.
pub struct PathId(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        raw.parse().map(PathId).map_err(|_| {
            ApiError::invalid_field(
                vec!["path".into(), "id".into()],
                format!("Input should be a valid UUID, got {raw:?}"),
            )
        })
    }
}
