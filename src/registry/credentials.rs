//! Registry credentials: the pull-secret formats (`.dockerconfigjson`, legacy `.dockercfg`,
//! a docker `config.json`) and a secret type that never prints itself.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

/// A credential value. `Debug` and `Display` print `<redacted>`, so it can sit in any struct that
/// is logged without leaking.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value: grep for it to audit where credentials go.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate to one registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken` in a docker config), exchanged at the token endpoint.
    IdentityToken(Secret),
}

impl Credentials {
    /// Where these credentials came from is not part of their identity; two secrets holding the same
    /// login share cached tokens.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("not valid JSON for a docker config: {0}")]
    Json(String),
    #[error("entry for {registry:?}: {reason}")]
    Entry { registry: String, reason: String },
}

/// Credentials per registry host, as read from one or more docker config documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    entries: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// Parses a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson` or a docker `config.json`.
    pub fn from_config_json(bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let doc: ConfigJson =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Json(e.to_string()))?;
        Self::from_entries(doc.auths)
    }

    /// Parses a legacy `kubernetes.io/dockercfg` secret's `.dockercfg`: the `auths` map at top level.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let entries: BTreeMap<String, AuthEntry> =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Json(e.to_string()))?;
        Self::from_entries(entries)
    }

    fn from_entries(raw: BTreeMap<String, AuthEntry>) -> Result<DockerConfig, CredentialsError> {
        let mut entries = BTreeMap::new();
        for (key, entry) in raw {
            let registry = normalize_host(&key);
            let credentials =
                entry
                    .into_credentials()
                    .map_err(|reason| CredentialsError::Entry {
                        registry: registry.clone(),
                        reason,
                    })?;
            entries.insert(registry, credentials);
        }
        Ok(DockerConfig { entries })
    }

    /// The credentials for a registry host as written in image references (`docker.io`, `host:port`).
    pub fn lookup(&self, registry: &str) -> Option<&Credentials> {
        self.entries.get(&normalize_host(registry))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, registry: &str, credentials: Credentials) {
        self.entries.insert(normalize_host(registry), credentials);
    }
}

impl AuthEntry {
    fn into_credentials(self) -> Result<Credentials, String> {
        if let Some(token) = self.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Credentials::IdentityToken(Secret::new(token)));
        }
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            if !username.is_empty() {
                return Ok(Credentials::Basic {
                    username: username.clone(),
                    password: Secret::new(password.clone()),
                });
            }
        }
        match self.auth.filter(|a| !a.is_empty()) {
            Some(auth) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| "`auth` is not base64".to_string())?;
                let decoded =
                    String::from_utf8(decoded).map_err(|_| "`auth` is not UTF-8".to_string())?;
                let (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| "`auth` is not base64 of `user:password`".to_string())?;
                Ok(Credentials::Basic {
                    username: username.to_string(),
                    password: Secret::new(password),
                })
            }
            None => Ok(Credentials::Anonymous),
        }
    }
}

/// Docker config keys are written many ways (`https://index.docker.io/v1/`, `ghcr.io`,
/// `http://127.0.0.1:5000`): reduce them to the host an image reference names.
pub fn normalize_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_dockerconfigjson_auth_field() {
        let doc = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#,
            b64("alice:s3cr:et")
        );
        let config = DockerConfig::from_config_json(doc.as_bytes()).unwrap();
        assert_eq!(
            config.lookup("docker.io"),
            Some(&Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("s3cr:et")
            })
        );
        assert_eq!(
            config.lookup("127.0.0.1:5000"),
            Some(&Credentials::Basic {
                username: "u".into(),
                password: Secret::new("p")
            })
        );
        assert_eq!(config.lookup("ghcr.io"), None);
    }

    #[test]
    fn reads_legacy_dockercfg() {
        let doc = format!(
            r#"{{"http://127.0.0.1:5000":{{"auth":"{}","email":"a@b"}}}}"#,
            b64("bob:pw")
        );
        let config = DockerConfig::from_dockercfg(doc.as_bytes()).unwrap();
        assert_eq!(
            config.lookup("127.0.0.1:5000"),
            Some(&Credentials::Basic {
                username: "bob".into(),
                password: Secret::new("pw")
            })
        );
    }

    #[test]
    fn identity_tokens_win_over_auth() {
        let doc = r#"{"auths":{"ghcr.io":{"auth":"eDp5","identitytoken":"tok"}}}"#;
        let config = DockerConfig::from_config_json(doc.as_bytes()).unwrap();
        assert_eq!(
            config.lookup("ghcr.io"),
            Some(&Credentials::IdentityToken(Secret::new("tok")))
        );
    }

    #[test]
    fn bad_documents_are_errors_without_the_secret() {
        let err = DockerConfig::from_config_json(b"{not json").unwrap_err();
        assert!(matches!(err, CredentialsError::Json(_)));
        let doc = r#"{"auths":{"r.io":{"auth":"!!!notbase64-SECRETVALUE"}}}"#;
        let err = DockerConfig::from_config_json(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("r.io"));
        assert!(!err.to_string().contains("SECRETVALUE"));
    }

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert_eq!(Secret::new("hunter2").to_string(), "<redacted>");
    }
}
