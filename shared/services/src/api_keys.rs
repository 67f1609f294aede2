//! API keys: create (the secret is answered once), list, delete, and authenticate a presented
//! secret, optionally through a small cache of recent successes.

use std::collections::HashMap;
use std::sync::Mutex;

use sluice_core::api_keys::{NewApiKey, generate_api_key, hash_secret, is_well_formed};
use sluice_core::domain::{ApiKey, Id, Timestamp};

use crate::Services;
use crate::error::{Result, ServiceError};

impl Services {
    /// Makes a key named `name` and stores it hashed. The answer holds the secret, which is not
    /// kept anywhere: this is the only time anyone sees it.
    pub async fn create_api_key(&self, name: &str) -> Result<NewApiKey> {
        sluice_core::api_keys::validate_key_name(name)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let made = generate_api_key(Id::new_v4(), name, self.now());
        self.store
            .create_api_key(&made.key)
            .await
            .map_err(|e| match e {
                // The store's message may name the hash; the name is what the caller chose.
                sluice_store::StoreError::Conflict(_) => {
                    ServiceError::Conflict(format!("API key \"{name}\" already exists."))
                }
                other => other.into(),
            })?;
        Ok(made)
    }

    /// Every key, by name.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Deletes the key whose id or name is `id_or_name` (an id wins over a name that happens
    /// to look like one) and answers it. A cache elsewhere may keep accepting it for up to its
    /// time to live; see [`ApiKeyCache`].
    pub async fn delete_api_key(&self, id_or_name: &str) -> Result<ApiKey> {
        // Keys are few (one per person or system), so listing beats a name index in the port.
        let keys = self.store.list_api_keys().await?;
        let by_id = id_or_name.parse::<Id>().ok();
        let found = by_id
            .and_then(|id| keys.iter().find(|k| k.id == id))
            .or_else(|| keys.iter().find(|k| k.name == id_or_name))
            .cloned()
            .ok_or_else(|| {
                ServiceError::NotFound(format!("API key \"{id_or_name}\" not found."))
            })?;
        if !self.store.delete_api_key(found.id).await? {
            // Deleted by someone else between the list and the delete: the outcome they asked
            // for, but not by this call.
            return Err(ServiceError::NotFound(format!(
                "API key \"{id_or_name}\" not found."
            )));
        }
        Ok(found)
    }

    /// The key `secret` belongs to, or `None` when it is not a key. One store read per call,
    /// none for a token that cannot be a key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        if !is_well_formed(secret) {
            return Ok(None);
        }
        Ok(self
            .store
            .read_api_key_by_hash(&hash_secret(secret))
            .await?)
    }

    /// [`Services::authenticate`] through `cache`: a key found within the cache's time to live
    /// is answered without a store read. Misses are not remembered, so a new key works at once.
    pub async fn authenticate_cached(
        &self,
        secret: &str,
        cache: &ApiKeyCache,
    ) -> Result<Option<ApiKey>> {
        if !is_well_formed(secret) {
            return Ok(None);
        }
        let hash = hash_secret(secret);
        let now = self.now();
        if let Some(key) = cache.get(&hash, now) {
            return Ok(Some(key));
        }
        let found = self.store.read_api_key_by_hash(&hash).await?;
        if let Some(key) = &found {
            cache.insert(hash, key.clone(), now);
        }
        Ok(found)
    }
}

/// Recently authenticated keys, to save a store read on most requests (on Lambda that read is
/// a DynamoDB round trip per request). One per process.
///
/// The price: a key deleted from the store keeps working in a process that has it cached for up
/// to the time to live (60 s by default). The cache is keyed by the secret's hash, so no secret
/// is held in memory, and bounded: when full, expired entries go first, then the oldest.
pub struct ApiKeyCache {
    ttl: chrono::Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    key: ApiKey,
    expires: Timestamp,
}

impl ApiKeyCache {
    /// How long a successful lookup is reused by default.
    pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(60);
    /// How many keys are remembered by default: far more than a deployment has in use at once.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A cache remembering up to `capacity` keys for `ttl` each. A zero `ttl` or `capacity`
    /// remembers nothing.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> ApiKeyCache {
        ApiKeyCache {
            // Beyond chrono's range is "forever" for any practical purpose.
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How many keys are remembered now (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything, e.g. after deleting a key in the same process.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &str, now: Timestamp) -> Option<ApiKey> {
        let mut entries = self.lock();
        match entries.get(hash) {
            Some(c) if now < c.expires => Some(c.key.clone()),
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    fn insert(&self, hash: String, key: ApiKey, now: Timestamp) {
        if self.capacity == 0 || self.ttl <= chrono::Duration::zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&hash) {
            entries.retain(|_, c| now < c.expires);
            if entries.len() >= self.capacity {
                // Every entry lives equally long, so the soonest to expire is the oldest.
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, c)| c.expires)
                    .map(|(h, _)| h.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let expires = now
            .checked_add_signed(self.ttl)
            .unwrap_or(Timestamp::MAX_UTC);
        entries.insert(hash, Cached { key, expires });
    }
}

impl Default for ApiKeyCache {
    fn default() -> ApiKeyCache {
        ApiKeyCache::new(ApiKeyCache::DEFAULT_TTL, ApiKeyCache::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::TimeZone;
    use sluice_store::SqliteStore;

    use super::*;
    use crate::{ManualClock, Settings};

    fn services() -> (Services, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("sluice.db")).expect("open SQLite");
        let t0 = chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid instant");
        let clock = Arc::new(ManualClock::new(t0));
        let services = Services::new(Arc::new(store), clock.clone(), Settings::default());
        (services, clock, dir)
    }

    #[tokio::test]
    async fn create_list_delete() {
        let (s, _clock, _dir) = services();
        let ci = s.create_api_key("ci").await.expect("create");
        assert!(ci.secret.starts_with("sluice_"));
        assert_eq!(ci.key.created, s.now());
        let bot = s.create_api_key("bot").await.expect("create");
        assert!(matches!(
            s.create_api_key("ci").await,
            Err(ServiceError::Conflict(m)) if m.contains("\"ci\"")
        ));
        for bad in ["", "a b", "-x"] {
            assert!(
                matches!(s.create_api_key(bad).await, Err(ServiceError::Invalid(_))),
                "{bad:?}"
            );
        }
        let names: Vec<String> = s
            .list_api_keys()
            .await
            .expect("list")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["bot", "ci"]);

        assert_eq!(
            s.authenticate(&ci.secret).await.expect("auth"),
            Some(ci.key.clone())
        );
        assert_eq!(s.authenticate("sluice_nope").await.expect("auth"), None);

        assert_eq!(s.delete_api_key("ci").await.expect("delete"), ci.key);
        assert_eq!(
            s.delete_api_key(&bot.key.id.to_string())
                .await
                .expect("delete by id"),
            bot.key
        );
        assert!(matches!(
            s.delete_api_key("ci").await,
            Err(ServiceError::NotFound(_))
        ));
        assert_eq!(s.authenticate(&ci.secret).await.expect("auth"), None);
    }

    #[tokio::test]
    async fn a_cached_key_outlives_its_deletion_for_the_ttl_only() {
        let (s, clock, _dir) = services();
        let cache = ApiKeyCache::new(Duration::from_secs(60), 8);
        let ci = s.create_api_key("ci").await.expect("create");
        let other = s.create_api_key("other").await.expect("create");
        let auth = |secret: String| {
            let (s, cache) = (&s, &cache);
            async move { s.authenticate_cached(&secret, cache).await.expect("auth") }
        };
        assert_eq!(auth(ci.secret.clone()).await, Some(ci.key.clone()));
        s.delete_api_key("ci").await.expect("delete");
        s.delete_api_key("other").await.expect("delete");

        clock.advance(chrono::Duration::seconds(59));
        assert_eq!(auth(ci.secret.clone()).await, Some(ci.key.clone()));
        // Never looked up while it existed, so never cached.
        assert_eq!(auth(other.secret.clone()).await, None);
        assert_eq!(s.authenticate(&ci.secret).await.expect("auth"), None);

        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(auth(ci.secret.clone()).await, None);
        assert!(cache.is_empty(), "the expired entry is dropped");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_can_be_off() {
        let (s, clock, _dir) = services();
        let cache = ApiKeyCache::new(Duration::from_secs(60), 3);
        let mut made = Vec::new();
        for i in 0..5 {
            let k = s.create_api_key(&format!("k{i}")).await.expect("create");
            clock.advance(chrono::Duration::seconds(1));
            assert!(
                s.authenticate_cached(&k.secret, &cache)
                    .await
                    .expect("auth")
                    .is_some()
            );
            assert!(cache.len() <= 3, "{}", cache.len());
            made.push(k);
        }
        // The newest keys stay; the oldest were evicted, so deleting them takes effect at once.
        for k in &made {
            s.delete_api_key(&k.key.name).await.expect("delete");
        }
        let mut still = Vec::new();
        for k in &made {
            still.push(
                s.authenticate_cached(&k.secret, &cache)
                    .await
                    .expect("auth")
                    .is_some(),
            );
        }
        assert_eq!(still, [false, false, true, true, true]);

        let off = ApiKeyCache::new(Duration::ZERO, 10);
        let k = s.create_api_key("live").await.expect("create");
        assert!(
            s.authenticate_cached(&k.secret, &off)
                .await
                .expect("auth")
                .is_some()
        );
        assert!(off.is_empty());
        s.delete_api_key("live").await.expect("delete");
        assert_eq!(
            s.authenticate_cached(&k.secret, &off).await.expect("auth"),
            None
        );
    }
}
