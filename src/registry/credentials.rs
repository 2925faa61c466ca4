//! Registry credentials: the pull-secret formats (`.dockerconfigjson`, legacy `.dockercfg`,
//! a docker `config.json`) and a secret type that never prints itself.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::error::json_problem;

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

/// Who registry requests are made as. Listings, digests and tokens are kept per login, so one
/// tenant's credentials never serve another tenant's workloads. Prints as `anonymous` or
/// `login-<8 hex>` (a fingerprint, never the credentials).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    credentials: Credentials,
    id: String,
}

impl Login {
    pub fn new(credentials: Credentials) -> Login {
        use sha2::Digest as _;
        let id = match &credentials {
            Credentials::Anonymous => String::new(),
            Credentials::Basic { username, password } => {
                let mut hash = sha2::Sha256::new();
                hash.update(b"basic\0");
                hash.update(username.as_bytes());
                hash.update(b"\0");
                hash.update(password.expose().as_bytes());
                hex::encode(hash.finalize())
            }
            Credentials::IdentityToken(token) => {
                let mut hash = sha2::Sha256::new();
                hash.update(b"token\0");
                hash.update(token.expose().as_bytes());
                hex::encode(hash.finalize())
            }
        };
        Login { credentials, id }
    }

    pub fn anonymous() -> Login {
        Login::new(Credentials::Anonymous)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn is_anonymous(&self) -> bool {
        self.credentials.is_anonymous()
    }
}

impl Default for Login {
    fn default() -> Self {
        Login::anonymous()
    }
}

impl PartialOrd for Login {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By fingerprint: equal fingerprints are equal credentials (SHA-256).
impl Ord for Login {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id.get(..8) {
            Some(short) => write!(f, "login-{short}"),
            None => f.write_str("anonymous"),
        }
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a docker config does not parse. Never the offending value: serde quotes it
/// (`invalid type: string "hunter2"`), and in these documents it is often a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// `path` is the JSON path of the problem (`auths.ghcr.io.password`), `problem` what is wrong.
    #[error("not a docker config: at `{path}`: {problem}")]
    Json { path: String, problem: String },
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
        let doc: ConfigJson = parse_json(bytes, 3)?;
        Self::from_entries(doc.auths)
    }

    /// Parses a legacy `kubernetes.io/dockercfg` secret's `.dockercfg`: the `auths` map at top level.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<DockerConfig, CredentialsError> {
        let entries: BTreeMap<String, AuthEntry> = parse_json(bytes, 2)?;
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

/// Field names of an `auths` entry that may appear in an error path.
const KNOWN_FIELDS: &[&str] = &[
    "auths",
    "auth",
    "username",
    "password",
    "identitytoken",
    "registrytoken",
    "email",
    "serveraddress",
];

/// Parses with serde_path_to_error and reports only where (the JSON path, cut after
/// `field_depth` segments: the registry key and the field) and what kind of problem. Segments
/// that are not known field names or registry keys are replaced, so a value that was written
/// where a key belongs cannot slip into the message either.
fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    field_depth: usize,
) -> Result<T, CredentialsError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        CredentialsError::Json {
            path: safe_path(e.path(), field_depth),
            problem: json_problem(e.inner()),
        }
    })?;
    // Trailing content after the document.
    deserializer.end().map_err(|e| CredentialsError::Json {
        path: "(top level)".into(),
        problem: json_problem(&e),
    })?;
    Ok(value)
}

fn safe_path(path: &serde_path_to_error::Path, field_depth: usize) -> String {
    let mut segments = Vec::new();
    for (depth, segment) in path.iter().enumerate() {
        if depth >= field_depth {
            segments.push("…".to_string());
            break;
        }
        let registry_key = depth + 2 == field_depth;
        segments.push(match segment {
            serde_path_to_error::Segment::Map { key }
                if registry_key || KNOWN_FIELDS.contains(&key.as_str()) =>
            {
                normalize_host(key)
            }
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            _ => "?".to_string(),
        });
    }
    if segments.is_empty() {
        "(top level)".to_string()
    } else {
        segments.join(".")
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

    #[test]
    fn logins_print_a_fingerprint_and_compare_by_credentials() {
        let basic = |user: &str, password: &str| {
            Login::new(Credentials::Basic {
                username: user.into(),
                password: Secret::new(password),
            })
        };
        assert_eq!(Login::anonymous().to_string(), "anonymous");
        let a = basic("ci", "hunter2");
        let printed = format!("{a} {a:?}");
        assert!(printed.starts_with("login-") && !printed.contains("hunter2"));
        assert_eq!(a, basic("ci", "hunter2"));
        assert_ne!(a, basic("ci", "hunter3"));
        assert_ne!(a, basic("cj", "hunter2"));
        assert_ne!(a, Login::anonymous());
    }

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
        assert!(matches!(err, CredentialsError::Json { .. }));
        let doc = r#"{"auths":{"r.io":{"auth":"!!!notbase64-SECRETVALUE"}}}"#;
        let err = DockerConfig::from_config_json(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("r.io"));
        assert!(!err.to_string().contains("SECRETVALUE"));
    }

    #[test]
    fn malformed_documents_report_the_json_path_never_a_value() {
        const MARKER: &str = "hunter2-MARKER";
        let cases: &[(&str, bool, &str)] = &[
            (r#"{"auths":{"r.io":"hunter2-MARKER"}}"#, true, "auths.r.io"),
            (
                r#"{"auths":{"r.io":{"password":["hunter2-MARKER"]}}}"#,
                true,
                "auths.r.io.password",
            ),
            (
                r#"{"auths":{"r.io":{"username":"u","password":12,"auth":"hunter2-MARKER"}}}"#,
                true,
                "auths.r.io.password",
            ),
            (
                r#"{"auths":{"r.io":{"auth":{"hunter2-MARKER":1}}}}"#,
                true,
                "auths.r.io.auth",
            ),
            (
                r#"{"auths":{"r.io":{"hunter2-MARKER":{"x":"y" "z"}}}}"#,
                true,
                "auths.r.io.?",
            ),
            (r#"{"auths":["hunter2-MARKER"]}"#, true, "auths"),
            (
                r#"{"auths":{"r.io":{"auth":"hunter2-MARKER"}}} "hunter2-MARKER""#,
                true,
                "(top level)",
            ),
            (r#""hunter2-MARKER""#, true, "(top level)"),
            (r#"{"r.io":"hunter2-MARKER"}"#, false, "r.io"),
            (
                r#"{"r.io":{"password":{"a":"hunter2-MARKER"}}}"#,
                false,
                "r.io.password",
            ),
        ];
        for (doc, json, path) in cases {
            let err = if *json {
                DockerConfig::from_config_json(doc.as_bytes())
            } else {
                DockerConfig::from_dockercfg(doc.as_bytes())
            }
            .unwrap_err();
            let message = err.to_string();
            assert!(!message.contains(MARKER), "{doc}: {message}");
            assert!(!format!("{err:?}").contains(MARKER), "{doc}: {err:?}");
            match &err {
                CredentialsError::Json { path: got, .. } => {
                    assert_eq!(got, path, "{doc}: {message}")
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
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
