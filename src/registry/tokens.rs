//! Authorization headers reused until they expire, so a steady poll costs one token request per
//! token lifetime instead of one per listing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::credentials::{Credentials, Secret};
use super::error::json_problem;

/// The longest a token is reused, whatever the token server says: an `expires_in` of 2^64-1
/// must neither overflow an `Instant` nor keep a token for ever.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The distribution token spec's lifetime when `expires_in` is absent.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Cached `Authorization` values at most; tenants choose hosts and repositories, so the number of
/// keys is theirs to grow.
pub const MAX_CACHED_TOKENS: usize = 10_000;

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON: a lifetime that is not a sensible number falls back to the default.
    expires_in: Option<serde_json::Value>,
}

/// A token endpoint's JSON answer → the token and how long to reuse it (1 s ..= 1 h).
/// The error never quotes the body (it may hold the token).
pub fn parse_token_answer(body: &[u8]) -> Result<(Secret, Duration), String> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("answer {}", json_problem(&e)))?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "answer holds no token".to_string())?;
    Ok((
        Secret::new(token),
        token_lifetime(answer.expires_in.as_ref()),
    ))
}

fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let seconds = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match seconds.filter(|s| s.is_finite()) {
        // Clamped first, so from_secs_f64 never sees a negative or huge value.
        Some(s) => Duration::from_secs_f64(s.clamp(1.0, MAX_TOKEN_LIFETIME.as_secs_f64())),
        None => DEFAULT_TOKEN_LIFETIME,
    }
}

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
        let expires = lifetime.map(|l| {
            let l = l.min(MAX_TOKEN_LIFETIME);
            // Cannot overflow after the clamp; if it ever did, the entry is simply never reused.
            now.checked_add(l.saturating_sub(early_refresh(l)))
                .unwrap_or(now)
        });
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_CACHED_TOKENS && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires.is_none_or(|at| now < at));
            if entries.len() >= MAX_CACHED_TOKENS {
                // Still full of live entries: start over rather than grow; tokens are re-fetched.
                entries.clear();
            }
        }
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_answers() {
        let (token, lifetime) = parse_token_answer(br#"{"token":"t","expires_in":300}"#).unwrap();
        assert_eq!((token.expose(), lifetime), ("t", Duration::from_secs(300)));
        let (token, lifetime) = parse_token_answer(br#"{"access_token":"a"}"#).unwrap();
        assert_eq!((token.expose(), lifetime), ("a", DEFAULT_TOKEN_LIFETIME));
        let (token, _) = parse_token_answer(br#"{"token":"","access_token":"a"}"#).unwrap();
        assert_eq!(token.expose(), "a");
        for (expires_in, lifetime) in [
            ("18446744073709551615", MAX_TOKEN_LIFETIME),
            ("1e300", MAX_TOKEN_LIFETIME),
            ("-5", Duration::from_secs(1)),
            ("0", Duration::from_secs(1)),
            ("\"120\"", Duration::from_secs(120)),
            ("\"soon\"", DEFAULT_TOKEN_LIFETIME),
            ("null", DEFAULT_TOKEN_LIFETIME),
            ("[1]", DEFAULT_TOKEN_LIFETIME),
        ] {
            let body = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
            assert_eq!(
                parse_token_answer(body.as_bytes()).unwrap().1,
                lifetime,
                "{expires_in}"
            );
        }
        assert!(parse_token_answer(br#"{"token":""}"#)
            .unwrap_err()
            .contains("no token"));
        let err = parse_token_answer(br#"{"token":["SECRET-TOKEN"]}"#).unwrap_err();
        assert!(!err.contains("SECRET-TOKEN"), "{err}");
    }

    #[test]
    fn a_huge_lifetime_cannot_overflow_the_cache() {
        let cache = TokenCache::default();
        let key = TokenKey::new("r", "s", &Credentials::Anonymous);
        let t0 = Instant::now();
        cache.put(
            key.clone(),
            Secret::new("Bearer x"),
            t0,
            Some(Duration::MAX),
        );
        assert!(cache.get(&key, t0 + Duration::from_secs(3000)).is_some());
        assert!(cache.get(&key, t0 + MAX_TOKEN_LIFETIME).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_CACHED_TOKENS + 10 {
            let key = TokenKey::new(&format!("r{i}"), "s", &Credentials::Anonymous);
            cache.put(
                key,
                Secret::new("Bearer x"),
                t0,
                Some(Duration::from_secs(60)),
            );
        }
        let len = cache.entries.lock().unwrap().len();
        assert!(len <= MAX_CACHED_TOKENS, "{len}");
        let last = TokenKey::new(
            &format!("r{}", MAX_CACHED_TOKENS + 9),
            "s",
            &Credentials::Anonymous,
        );
        assert!(cache.get(&last, t0).is_some(), "the newest entry is kept");
    }

    proptest! {
        #[test]
        fn arbitrary_token_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((_, lifetime)) = parse_token_answer(&body) {
                prop_assert!(lifetime >= Duration::from_secs(1) && lifetime <= MAX_TOKEN_LIFETIME);
            }
        }

        #[test]
        fn any_expires_in_gives_a_bounded_lifetime(
            expires_in in r#"-?[0-9]{1,30}(\.[0-9]{0,5})?(e-?[0-9]{1,3})?|"[^"\\]{0,10}"|null|true|\{\}"#,
        ) {
            let body = format!(r#"{{"token":"t","expires_in":{expires_in}}}"#);
            if let Ok((_, lifetime)) = parse_token_answer(body.as_bytes()) {
                prop_assert!(lifetime >= Duration::from_secs(1) && lifetime <= MAX_TOKEN_LIFETIME);
                let t0 = Instant::now();
                let cache = TokenCache::default();
                cache.put(TokenKey::new("r", "s", &Credentials::Anonymous), Secret::new("x"), t0, Some(lifetime));
            }
        }
    }

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
