//! A Docker Hub style token issuer: `GET /token?service=S&scope=repository:NAME:pull,push` with HTTP
//! Basic credentials answers a JWT the registry verifies against the issuer's certificate.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;

/// The `iss` claim and the registry's `auth.token.issuer`.
pub const ISSUER: &str = "tagwatch-testbed-issuer";
/// The `aud` claim and the registry's `auth.token.service`.
pub const SERVICE: &str = "tagwatch-testbed-registry";

/// One request the issuer answered. Holds the scopes asked, never the password or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `None` for an anonymous request.
    pub username: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub status: u16,
}

/// One access grant in a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn repository(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

struct Signer {
    key: EncodingKey,
    /// Base64 DER of the self-signed certificate: the `x5c` chain and the registry's root bundle.
    x5c: String,
}

struct IssuerState {
    username: String,
    password: String,
    expires_in: Duration,
    signer: Signer,
    seen: Mutex<Vec<TokenRequest>>,
}

/// The running issuer; the server stops when this is dropped.
pub struct TokenIssuer {
    state: Arc<IssuerState>,
    addr: SocketAddr,
    cert_pem: String,
    server: JoinHandle<()>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("addr", &self.addr)
            .field("username", &self.state.username)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Starts an issuer on a free loopback port that accepts only `username`/`password`.
    pub async fn start(
        username: &str,
        password: &str,
        expires_in: Duration,
    ) -> anyhow::Result<TokenIssuer> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = rcgen::CertificateParams::new(vec!["tagwatch-testbed-issuer".to_string()])?;
        let cert = params.self_signed(&key_pair)?;
        let signer = Signer {
            key: EncodingKey::from_ec_der(&key_pair.serialize_der()),
            x5c: base64::engine::general_purpose::STANDARD.encode(cert.der()),
        };
        let state = Arc::new(IssuerState {
            username: username.to_string(),
            password: password.to_string(),
            expires_in,
            signer,
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/token", get(token))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TokenIssuer {
            state,
            addr,
            cert_pem: cert.pem(),
            server,
        })
    }

    /// The `realm` the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// PEM of the signing certificate, for the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// How many HTTP requests `/token` answered (any status).
    pub fn token_requests(&self) -> usize {
        self.seen().len()
    }

    /// Every HTTP request `/token` answered, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.seen().clone()
    }

    /// Signs a token in process, without an HTTP request (not counted): for the harness's own calls.
    pub fn mint(&self, access: &[Access]) -> anyhow::Result<String> {
        sign(&self.state, &self.state.username, access)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<TokenRequest>> {
        self.state.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn token(
    State(state): State<Arc<IssuerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (service, scopes) = parse_query(query.as_deref().unwrap_or(""));
    let (response, username) = match basic_credentials(&headers) {
        // Anonymous callers get a valid token that grants nothing, like Docker Hub for a private
        // repository: the registry then refuses the request itself.
        None => (answer(&state, "", &[]), None),
        Some((user, password)) if user == state.username && password == state.password => {
            (answer(&state, &user, &grants(&scopes)), Some(user))
        }
        Some((user, _)) => {
            let body = Json(json!({ "details": "incorrect username or password" }));
            ((StatusCode::UNAUTHORIZED, body).into_response(), Some(user))
        }
    };
    let status = response.status();
    state
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(TokenRequest {
            username,
            service,
            scopes,
            status: status.as_u16(),
        });
    response
}

fn answer(state: &IssuerState, subject: &str, access: &[Access]) -> Response {
    match sign(state, subject, access) {
        Ok(token) => {
            let issued_at = rfc3339_utc(SystemTime::now());
            Json(json!({
                "token": token,
                "access_token": token,
                "expires_in": state.expires_in.as_secs(),
                "issued_at": issued_at,
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("signing failed: {e}"),
        )
            .into_response(),
    }
}

fn sign(state: &IssuerState, subject: &str, access: &[Access]) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(vec![state.signer.x5c.clone()]);
    let claims = Claims {
        iss: ISSUER,
        sub: subject,
        aud: SERVICE,
        exp: now + state.expires_in.as_secs(),
        // A little slack: the registry rejects a token whose nbf is ahead of its clock.
        nbf: now.saturating_sub(10),
        iat: now,
        jti: format!("{:032x}", rand::random::<u128>()),
        access,
    };
    Ok(jsonwebtoken::encode(&header, &claims, &state.signer.key)?)
}

/// Grants every action asked on each `repository:NAME:ACTIONS` scope.
fn grants(scopes: &[String]) -> Vec<Access> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(Access {
                kind: kind.to_string(),
                name: name.to_string(),
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Reads `service` and every `scope` (clients may send several, or several space-separated).
fn parse_query(query: &str) -> (Option<String>, Vec<String>) {
    let mut service = None;
    let mut scopes = Vec::new();
    let Ok(url) = reqwest::Url::parse(&format!("http://issuer/token?{query}")) else {
        return (None, scopes);
    };
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "service" => service = Some(value.into_owned()),
            "scope" => scopes.extend(
                value
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    (service, scopes)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// RFC 3339 UTC time without a date crate.
fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_what_each_scope_asks() {
        let access = grants(&["repository:team/app:pull,push".to_string()]);
        assert_eq!(
            access,
            vec![Access::repository("team/app", &["pull", "push"])]
        );
    }

    #[test]
    fn reads_repeated_and_space_separated_scopes() {
        let (service, scopes) = parse_query(
            "service=s&scope=repository%3Aa%3Apull&scope=repository:b:pull%20repository:c:push",
        );
        assert_eq!(service.as_deref(), Some("s"));
        assert_eq!(
            scopes,
            vec![
                "repository:a:pull",
                "repository:b:pull",
                "repository:c:push"
            ]
        );
    }

    #[test]
    fn formats_issued_at_as_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339_utc(t), "2023-11-14T22:13:20Z");
    }
}
