//! Asking Prometheus: the instant query behind a canary's query gate. The query must answer one
//! number: a scalar, or an instant vector of at most one series (an empty vector is "no data",
//! left to the caller to judge). Only the transport errors name the URL, without its credentials.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// How much of an unexpected answer an error quotes.
const EXCERPT: usize = 200;

/// Why a canary query gave no number. Only the transport errors name the URL, and then without
/// its credentials.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid Prometheus URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("cannot build the HTTP client for Prometheus: {reason}")]
    Client { reason: String },
    #[error("{url}: request failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: unexpected HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus refused the query ({error_type}): {error}")]
    Prometheus { error_type: String, error: String },
    #[error("not a Prometheus query answer: {reason}")]
    Malformed { reason: String },
    #[error(
        "the query returned {count} series; it must aggregate them to one \
         (e.g. wrap it in sum(...) or max(...))"
    )]
    TooManySeries { count: usize },
    #[error(
        "the query returned a {result_type} result; it must return an instant vector or a scalar"
    )]
    UnsupportedResult { result_type: &'static str },
    #[error("the query returned {value:?}, not a number")]
    NotANumber { value: String },
}

impl QueryError {
    /// A small fixed set, for metric labels and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::InvalidUrl { .. } | QueryError::Client { .. } => "config",
            QueryError::Transport { .. } => "transport",
            QueryError::Status { .. } => "unexpected_status",
            QueryError::Prometheus { .. } => "query_error",
            QueryError::Malformed { .. } => "malformed",
            QueryError::TooManySeries { .. } => "too_many_series",
            QueryError::UnsupportedResult { .. } => "unsupported_result",
            QueryError::NotANumber { .. } => "not_a_number",
        }
    }
}

/// Asks one Prometheus (or anything speaking its HTTP API) instant queries.
#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    /// `{base}/api/v1/query`, with any userinfo (reqwest sends it as basic auth).
    endpoint: Url,
    /// The same without userinfo: the only form that appears in errors and `Debug`.
    shown: String,
    timeout: Duration,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("endpoint", &self.shown)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `url` without username and password.
fn without_userinfo(url: &Url) -> String {
    let mut shown = url.clone();
    // Fails only for URLs that cannot have userinfo, which then have none to strip.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

impl PrometheusClient {
    /// `base_url` is where Prometheus serves its API, e.g. `http://prometheus:9090` or
    /// `https://user:pw@metrics.example/prometheus` (a path prefix is kept; userinfo is sent as
    /// basic auth and never shown). `timeout` bounds each query.
    pub fn new(base_url: &str, timeout: Duration) -> Result<PrometheusClient, QueryError> {
        // The parse error never quotes the input, which may hold a password.
        let mut base = Url::parse(base_url.trim()).map_err(|e| QueryError::InvalidUrl {
            reason: e.to_string(),
        })?;
        let invalid = |base: &Url, why: &str| QueryError::InvalidUrl {
            reason: format!("{}: {why}", without_userinfo(base)),
        };
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(&base, "the scheme must be http or https"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(&base, "a query string or fragment is not allowed"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base
            .join("api/v1/query")
            .map_err(|e| invalid(&base, &e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| QueryError::Client {
                reason: crate::error::chain(&e.without_url()),
            })?;
        Ok(PrometheusClient {
            http,
            shown: without_userinfo(&endpoint),
            endpoint,
            timeout,
        })
    }

    /// Instant query (`GET {base}/api/v1/query?query=...`). `Ok(Some(v))` for a scalar or a
    /// vector with exactly one sample (possibly NaN), `Ok(None)` for an empty vector (no data).
    pub async fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            return decode(&body);
        }
        // Prometheus answers a bad query with 400/422/503 and its usual error object.
        match decode(&body) {
            Err(e @ QueryError::Prometheus { .. }) => Err(e),
            _ => Err(QueryError::Status {
                url: self.shown.clone(),
                status: status.as_u16(),
                body: excerpt(&body),
            }),
        }
    }

    fn transport(&self, e: reqwest::Error) -> QueryError {
        let reason = if e.is_timeout() {
            format!("timed out after {:?}", self.timeout)
        } else {
            // reqwest's own message would repeat the URL, userinfo included.
            crate::error::chain(&e.without_url())
        };
        QueryError::Transport {
            url: self.shown.clone(),
            reason,
        }
    }
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_string(),
        None => text.to_string(),
    }
}

/// The envelope of every Prometheus API answer.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    /// `[timestamp, "value"]`
    Scalar((IgnoredAny, String)),
    Vector(Vec<Sample>),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    /// `[timestamp, "value"]`; absent for native histogram samples.
    #[serde(default)]
    value: Option<(IgnoredAny, String)>,
}

/// Decodes the body of an instant query answer (any HTTP status).
fn decode(body: &[u8]) -> Result<Option<f64>, QueryError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| QueryError::Malformed {
        reason: format!("{e}; the answer starts with {:?}", excerpt(body)),
    })?;
    match answer.status.as_str() {
        "success" => {}
        "error" => {
            return Err(QueryError::Prometheus {
                error_type: answer.error_type.unwrap_or_else(|| "unknown".to_string()),
                error: answer.error.unwrap_or_default(),
            })
        }
        other => {
            return Err(QueryError::Malformed {
                reason: format!("status {other:?}, expected \"success\" or \"error\""),
            })
        }
    }
    let data = answer.data.ok_or_else(|| QueryError::Malformed {
        reason: "a successful answer without data".to_string(),
    })?;
    let value = match data {
        Data::Scalar((_, value)) => value,
        Data::Vector(samples) => match <[Sample; 1]>::try_from(samples) {
            Ok([sample]) => match sample.value {
                Some((_, value)) => value,
                None => {
                    return Err(QueryError::Malformed {
                        reason: "the sample has no float value (a native histogram?)".to_string(),
                    })
                }
            },
            Err(samples) if samples.is_empty() => return Ok(None),
            Err(samples) => {
                return Err(QueryError::TooManySeries {
                    count: samples.len(),
                })
            }
        },
        Data::Matrix(_) => {
            return Err(QueryError::UnsupportedResult {
                result_type: "range vector (matrix)",
            })
        }
        Data::String(_) => {
            return Err(QueryError::UnsupportedResult {
                result_type: "string",
            })
        }
    };
    parse_value(&value).map(Some)
}

/// Prometheus writes sample values as Go formats floats: `0.02`, `1e-05`, `NaN`, `+Inf`, `-Inf`.
fn parse_value(value: &str) -> Result<f64, QueryError> {
    value.parse::<f64>().map_err(|_| QueryError::NotANumber {
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::model::query::Threshold;

    fn decoded(body: &str) -> Result<Option<f64>, QueryError> {
        decode(body.as_bytes())
    }

    #[test]
    fn decodes_a_scalar() {
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"0.25"]}}"#;
        assert_eq!(decoded(body).expect("scalar"), Some(0.25));
    }

    #[test]
    fn decodes_a_one_sample_vector() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"track":"canary"},"value":[1700000000.5,"0.02"]}]}}"#;
        assert_eq!(decoded(body).expect("vector"), Some(0.02));
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1700000000,"1e-05"]}]},"warnings":["x"]}"#;
        assert_eq!(decoded(body).expect("vector"), Some(0.00001));
        for (text, want) in [("+Inf", f64::INFINITY), ("-Inf", f64::NEG_INFINITY)] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{text}"]}}]}}}}"#
            );
            assert_eq!(decoded(&body).expect("vector"), Some(want));
        }
    }

    #[test]
    fn nan_is_a_value_that_fails_every_threshold() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1700000000,"NaN"]}]}}"#;
        let value = decoded(body).expect("NaN decodes").expect("a sample");
        assert!(value.is_nan());
        assert!(!"!= 0".parse::<Threshold>().expect("valid").holds(value));
    }

    #[test]
    fn an_empty_vector_is_no_data() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(decoded(body).expect("empty"), None);
    }

    #[test]
    fn two_series_must_be_aggregated() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"track":"canary"},"value":[1,"0.02"]},
            {"metric":{"track":"primary"},"value":[1,"0.5"]}]}}"#;
        let err = decoded(body).expect_err("two series");
        assert!(
            matches!(err, QueryError::TooManySeries { count: 2 }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("2 series") && text.contains("aggregate"),
            "{text}"
        );
    }

    #[test]
    fn an_error_answer_keeps_prometheus_words() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \")\""}"#;
        let err = decoded(body).expect_err("error status");
        assert_eq!(err.kind(), "query_error");
        let text = err.to_string();
        assert!(text.contains("bad_data"), "{text}");
        assert!(text.contains("parse error: unexpected \")\""), "{text}");
    }

    #[test]
    fn other_results_are_refused() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1,"1"],[2,"2"]]}]}}"#;
        let err = decoded(matrix).expect_err("matrix");
        assert!(err.to_string().contains("matrix"), "{err}");
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
        let err = decoded(string).expect_err("string");
        assert!(
            matches!(err, QueryError::UnsupportedResult { .. }),
            "{err:?}"
        );
        let word = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}"#;
        let err = decoded(word).expect_err("not a number");
        assert!(err.to_string().contains("\"many\""), "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [
            "",
            "<html>502 Bad Gateway</html>",
            "{}",
            "[1,2]",
            r#"{"status":"success"}"#,
            r#"{"status":"maybe","data":{}}"#,
            r#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#,
        ] {
            let err = decoded(body).expect_err(body);
            assert!(
                matches!(err, QueryError::Malformed { .. }),
                "{body}: {err:?}"
            );
        }
        let err = decoded("<html>502 Bad Gateway</html>").expect_err("html");
        assert!(err.to_string().contains("502 Bad Gateway"), "{err}");
    }

    #[test]
    fn urls_keep_their_prefix_and_lose_their_credentials() {
        let second = Duration::from_secs(1);
        let client = PrometheusClient::new("http://prometheus:9090", second).expect("valid");
        assert_eq!(
            client.endpoint.as_str(),
            "http://prometheus:9090/api/v1/query"
        );
        let client =
            PrometheusClient::new("https://u:s3cret@metrics.example/prom", second).expect("valid");
        assert_eq!(
            client.endpoint.as_str(),
            "https://u:s3cret@metrics.example/prom/api/v1/query"
        );
        assert_eq!(client.shown, "https://metrics.example/prom/api/v1/query");
        assert!(!format!("{client:?}").contains("s3cret"));
        let client = PrometheusClient::new("http://p:9090/prom/", second).expect("valid");
        assert_eq!(client.endpoint.as_str(), "http://p:9090/prom/api/v1/query");

        for bad in [
            "prometheus:9090",
            "ftp://u:s3cret@p/",
            "http://u:s3cret@p/?x=1",
            "not a url",
            "",
        ] {
            let err = PrometheusClient::new(bad, second).expect_err(bad);
            assert!(
                matches!(err, QueryError::InvalidUrl { .. }),
                "{bad}: {err:?}"
            );
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}
