//! SDK clients per credentials: the ambient chain by default, or what a pool's
//! `aws_credentials` block names (keys, profile, region, endpoint).

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use serde_json::Value;
use sluice_infra::InfraError;
use tokio::sync::Mutex;

#[derive(Clone, Debug)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub batch: aws_sdk_batch::Client,
    region: Option<String>,
}

/// Attempts per call, with the SDK's standard exponential backoff and jitter in between.
const ATTEMPTS: u32 = 5;

impl Clients {
    pub async fn from_env() -> Clients {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
            .load()
            .await;
        Clients::from_config(&config)
    }

    #[must_use]
    pub fn from_config(config: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(config),
            batch: aws_sdk_batch::Client::new(config),
            region: config.region().map(ToString::to_string),
        }
    }

    #[must_use]
    pub fn region(&self) -> Option<String> {
        self.region.clone()
    }
}

pub(crate) struct ClientCache {
    /// The ambient configuration's clients, loaded on first use: loading resolves the region,
    /// which off EC2 means asking the instance metadata service and logging its failure, and a
    /// server that never sees a push pool must not pay for (or print) that.
    default: tokio::sync::OnceCell<Arc<Clients>>,
    by_block: Mutex<HashMap<String, Arc<Clients>>>,
}

fn text<'a>(block: &'a Value, key: &str) -> Option<&'a str> {
    block
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl ClientCache {
    pub(crate) fn new(default: Option<Clients>) -> ClientCache {
        ClientCache {
            default: tokio::sync::OnceCell::new_with(default.map(Arc::new)),
            by_block: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn get(&self, block: Option<&Value>) -> Result<Arc<Clients>, InfraError> {
        let Some(block) = block.filter(|b| b.as_object().is_some_and(|m| !m.is_empty())) else {
            let clients = self
                .default
                .get_or_init(|| async { Arc::new(Clients::from_env().await) })
                .await;
            return Ok(clients.clone());
        };
        let key = sluice_core::push::content_hash(block);
        let mut cache = self.by_block.lock().await;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS));
        if let Some(region) = text(block, "region_name") {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        if let Some(profile) = text(block, "profile_name") {
            loader = loader.profile_name(profile);
        }
        match (
            text(block, "aws_access_key_id"),
            text(block, "aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => {
                let creds = aws_sdk_ecs::config::Credentials::new(
                    id,
                    secret,
                    text(block, "aws_session_token").map(str::to_owned),
                    None,
                    "aws_credentials block",
                );
                loader = loader.credentials_provider(creds);
            }
            (None, None) => {}
            _ => {
                return Err(InfraError::Rejected(
                    "aws_credentials: an access key id needs its secret access key (and the \
                     other way round)"
                        .to_owned(),
                ));
            }
        }
        if let Some(endpoint) = block
            .get("aws_client_parameters")
            .and_then(|p| text(p, "endpoint_url"))
        {
            loader = loader.endpoint_url(endpoint);
        }
        let clients = Arc::new(Clients::from_config(&loader.load().await));
        cache.insert(key, clients.clone());
        Ok(clients)
    }
}
