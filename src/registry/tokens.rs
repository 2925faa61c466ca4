//! Authorization headers reused until they expire, so a steady poll costs one token request per
//! token lifetime instead of one per listing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::credentials::{Credentials, Secret};

/// One cache entry per registry host, scope and login. The login enters only as a hash, so the
/// key can be logged or inspected without exposing it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub host: String,
    pub scope: String,
    login: u64,
}

impl TokenKey {
    pub fn new(host: &str, scope: &str, credentials: &Credentials) -> TokenKey {
        let mut hasher = DefaultHasher::new();
        credentials.hash(&mut hasher);
        TokenKey {
            host: host.to_string(),
            scope: scope.to_string(),
            login: hasher.finish(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    authorization: Secret,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenKey, Entry>>,
}

impl TokenCache {
    /// The cached `Authorization` header value, if still valid at `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Secret> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(entry) if entry.expires.is_none_or(|e| now < e) => {
                Some(entry.authorization.clone())
            }
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores an `Authorization` value; `lifetime` `None` means it does not expire (Basic).
    /// Tokens are dropped a little early so a request never carries one that expires in flight.
    pub fn put(
        &self,
        key: TokenKey,
        authorization: Secret,
        now: Instant,
        lifetime: Option<Duration>,
    ) {
        let expires = lifetime.map(|l| now + l.saturating_sub(early_refresh(l)));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            key,
            Entry {
                authorization,
                expires,
            },
        );
    }

    pub fn forget(&self, key: &TokenKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }
}

fn early_refresh(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_until_shortly_before_expiry() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", "repository:a:pull", &Credentials::Anonymous);
        let t0 = Instant::now();
        cache.put(
            key.clone(),
            Secret::new("Bearer x"),
            t0,
            Some(Duration::from_secs(60)),
        );
        assert!(cache.get(&key, t0 + Duration::from_secs(50)).is_some());
        assert!(cache.get(&key, t0 + Duration::from_secs(55)).is_none());
        assert!(cache.get(&key, t0).is_none(), "expired entries are dropped");
    }

    #[test]
    fn keys_separate_logins() {
        let a = Credentials::Basic {
            username: "u".into(),
            password: Secret::new("1"),
        };
        let b = Credentials::Basic {
            username: "u".into(),
            password: Secret::new("2"),
        };
        assert_ne!(TokenKey::new("r", "s", &a), TokenKey::new("r", "s", &b));
        assert_eq!(TokenKey::new("r", "s", &a), TokenKey::new("r", "s", &a));
    }
}
