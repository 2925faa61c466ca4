//! The registry's configuration file.
//!
//! Written as JSON, which YAML parsers (distribution uses yaml.v2) read as flow style: no hand
//! quoting of paths, URLs or header values.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// How clients authenticate to the registry.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    /// HTTP Basic checked against an htpasswd file (bcrypt).
    Basic { username: String, password: String },
    /// Docker Hub style Bearer tokens from an in-process issuer that checks these credentials.
    Token { username: String, password: String },
}

impl Auth {
    pub fn credentials(&self) -> Option<(String, String)> {
        match self {
            Auth::Anonymous => None,
            Auth::Basic { username, password } | Auth::Token { username, password } => {
                Some((username.clone(), password.clone()))
            }
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// A webhook endpoint the registry notifies on pushes and deletes.
#[derive(Clone)]
pub struct Notifications {
    pub url: String,
    /// Sent with every notification, e.g. `("Authorization", "Bearer ...")`.
    pub headers: Vec<(String, String)>,
    /// Actions not to send; distribution knows push, pull, mount and delete.
    pub ignored_actions: Vec<String>,
    pub timeout: Duration,
    /// Failures before the registry backs off.
    pub threshold: u32,
    pub backoff: Duration,
}

impl Notifications {
    /// Push and delete events only, to `url`.
    pub fn to(url: impl Into<String>) -> Notifications {
        Notifications {
            url: url.into(),
            headers: Vec::new(),
            ignored_actions: vec!["pull".into(), "mount".into()],
            timeout: Duration::from_secs(2),
            threshold: 3,
            backoff: Duration::from_secs(1),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Notifications {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl fmt::Debug for Notifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Notifications")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("ignored_actions", &self.ignored_actions)
            .finish_non_exhaustive()
    }
}

/// What a `Registry` starts with.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: Auth,
    pub notifications: Option<Notifications>,
    /// Lifetime of issued tokens, for `Auth::Token`; 300 s when `None`.
    pub token_expires_in: Option<Duration>,
}

/// Where the auth section points, once its files and issuer exist.
pub enum AuthConfig<'a> {
    Anonymous,
    Htpasswd {
        path: &'a Path,
    },
    Token {
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        root_cert_bundle: &'a Path,
    },
}

/// Renders the configuration file contents.
pub fn render(
    port: u16,
    storage: &Path,
    auth: &AuthConfig<'_>,
    notifications: Option<&Notifications>,
) -> String {
    let mut config = json!({
        "version": "0.1",
        // JSON app log for diagnostics; the access log (stdout) is what requests() counts.
        "log": { "level": "info", "formatter": "json", "accesslog": { "disabled": false } },
        "storage": {
            "filesystem": { "rootdirectory": storage },
            "delete": { "enabled": true },
            "maintenance": { "uploadpurging": { "enabled": false } },
        },
        "http": { "addr": format!("127.0.0.1:{port}"), "secret": "tagwatch-testbed" },
    });
    match auth {
        AuthConfig::Anonymous => {}
        AuthConfig::Htpasswd { path } => {
            config["auth"] = json!({ "htpasswd": { "realm": "tagwatch-testbed", "path": path } });
        }
        AuthConfig::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => {
            config["auth"] = json!({ "token": {
                "realm": realm,
                "service": service,
                "issuer": issuer,
                "rootcertbundle": root_cert_bundle,
            } });
        }
    }
    if let Some(n) = notifications {
        config["notifications"] = notifications_section(n);
    }
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

fn notifications_section(n: &Notifications) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &n.headers {
        headers.insert(name.clone(), json!([value]));
    }
    json!({
        "events": { "includereferences": true },
        "endpoints": [{
            "name": "tagwatch",
            "url": n.url,
            "headers": headers,
            "timeout": format!("{}ms", n.timeout.as_millis()),
            "threshold": n.threshold,
            "backoff": format!("{}ms", n.backoff.as_millis()),
            // distribution ignores `actions` unless `mediatypes` is non-empty (upstream bug), so
            // name a media type no manifest or layer uses.
            "ignore": { "mediatypes": ["application/octet-stream"], "actions": n.ignored_actions },
        }],
    })
}

/// One htpasswd line with a bcrypt hash, the only hash distribution accepts.
pub fn htpasswd_line(username: &str, password: &str) -> anyhow::Result<String> {
    // The minimum cost keeps each authenticated request fast; the file never leaves the temp dir.
    let hash = bcrypt::hash(password, 4)?;
    Ok(format!("{username}:{hash}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let auth = Auth::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
        let n = Notifications::to("http://x").header("Authorization", "Bearer s3cret");
        assert!(!format!("{n:?}").contains("s3cret"));
    }

    #[test]
    fn notifications_ignore_a_media_type_so_ignored_actions_apply() {
        let n = Notifications::to("http://127.0.0.1:1/hook");
        let text = render(1, Path::new("/tmp/x"), &AuthConfig::Anonymous, Some(&n));
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        let ignore = &value["notifications"]["endpoints"][0]["ignore"];
        assert_eq!(ignore["mediatypes"][0], "application/octet-stream");
        assert_eq!(ignore["actions"], json!(["pull", "mount"]));
    }
}
