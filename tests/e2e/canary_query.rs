//! The canary query gate against a real Prometheus: a tiny exporter serves per-track error
//! ratios, Prometheus scrapes it, and `PrometheusClient` asks rendered queries and judges them.

use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use tagwatch::act::prometheus::{PrometheusClient, QueryError};
use tagwatch::model::query::{check_template, render, Threshold};
use tagwatch_testbed::wait;

use crate::support::{free_port, Prometheus};

const TEMPLATE: &str = "max(canary_error_ratio{namespace=\"{{namespace}}\",\
                        deployment=\"{{deployment}}\",track=\"{{track}}\"})";

const METRICS: &str = "\
# HELP canary_error_ratio Share of requests answered with 5xx.
# TYPE canary_error_ratio gauge
canary_error_ratio{namespace=\"ns1\",deployment=\"web\",track=\"canary\"} 0.02
canary_error_ratio{namespace=\"ns1\",deployment=\"web\",track=\"primary\"} 0.5
";

const USER: &str = "gate";
const PASSWORD: &str = "pw-Gate-9Kq3-never-shown";

/// The exporter Prometheus scrapes, plus two fake query APIs: one behind basic auth under a
/// path prefix, one that answers like a broken proxy.
async fn exporter() -> String {
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    METRICS,
                )
            }),
        )
        .route(
            "/prefixed/api/v1/query",
            get(move |headers: HeaderMap| {
                let expected_auth = expected_auth.clone();
                async move {
                    let authorized = headers
                        .get(header::AUTHORIZATION)
                        .is_some_and(|v| v.as_bytes() == expected_auth.as_bytes());
                    if authorized {
                        (
                            StatusCode::OK,
                            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#,
                        )
                    } else {
                        (StatusCode::UNAUTHORIZED, "unauthorized")
                    }
                }
            }),
        )
        .route(
            "/broken/api/v1/query",
            get(|| async { (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let addr = listener.local_addr().expect("exporter address").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_judges_the_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = exporter().await;
    let prometheus = Prometheus::start(dir.path(), "canary", &[&exporter]);
    let client = PrometheusClient::new(
        &format!("http://{}", prometheus.addr),
        Duration::from_secs(5),
    )
    .expect("client");

    let started = Instant::now();
    let c = &client;
    wait::until(
        "Prometheus to have scraped the exporter",
        Duration::from_secs(20),
        || async move { c.query("max(canary_error_ratio)").await.ok().flatten() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nprometheus:\n{}", prometheus.logs()));
    eprintln!("data after {:?}", started.elapsed());

    check_template(TEMPLATE).expect("a valid template");
    let threshold: Threshold = "< 0.05".parse().expect("threshold");

    let canary = render(TEMPLATE, "ns1", "web", "canary");
    let value = client.query(&canary).await.expect("canary query");
    assert_eq!(value, Some(0.02), "{canary}");
    assert!(threshold.holds(0.02));

    let primary = render(TEMPLATE, "ns1", "web", "primary");
    let value = client.query(&primary).await.expect("primary query");
    assert_eq!(value, Some(0.5), "{primary}");
    assert!(!threshold.holds(0.5), "0.5 fails {threshold}");

    // A name trying to break out of its quotes matches nothing instead of everything.
    let nothing = render(TEMPLATE, "ns1", "web\"} or vector(0) or x{a=\"", "canary");
    assert_eq!(
        client.query(&nothing).await.expect("no data"),
        None,
        "{nothing}"
    );
    let nothing = render(TEMPLATE, "ns2", "web", "canary");
    assert_eq!(
        client.query(&nothing).await.expect("no data"),
        None,
        "{nothing}"
    );

    let err = client
        .query("canary_error_ratio{namespace=\"ns1\"}")
        .await
        .expect_err("two series");
    assert!(
        matches!(err, QueryError::TooManySeries { count: 2 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("aggregate"), "{err}");

    let err = client
        .query("sum(canary_error_ratio")
        .await
        .expect_err("invalid PromQL");
    assert!(matches!(err, QueryError::Prometheus { .. }), "{err:?}");
    let text = err.to_string();
    eprintln!("invalid PromQL: {text}");
    assert!(
        text.contains("bad_data") && text.contains("parse error"),
        "Prometheus' own words: {text}"
    );

    let err = client
        .query("canary_error_ratio[1m]")
        .await
        .expect_err("a range vector");
    assert!(
        matches!(err, QueryError::UnsupportedResult { .. }),
        "{err:?}"
    );

    // 0/0: NaN is a value, and it fails every threshold.
    let nan = client.query("scalar(vector(0) / 0)").await.expect("NaN");
    assert!(nan.is_some_and(f64::is_nan), "{nan:?}");
    assert!(!"!= 0"
        .parse::<Threshold>()
        .expect("threshold")
        .holds(nan.unwrap_or(0.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_and_http_failures_are_errors_without_credentials() {
    let exporter = exporter().await;

    // Userinfo becomes basic auth; a path prefix is kept.
    let client = PrometheusClient::new(
        &format!("http://{USER}:{PASSWORD}@{exporter}/prefixed"),
        Duration::from_secs(5),
    )
    .expect("client");
    assert_eq!(client.query("up").await.expect("authorized"), Some(7.0));
    assert!(!format!("{client:?}").contains(PASSWORD));

    let client = PrometheusClient::new(
        &format!("http://{USER}:wrong@{exporter}/prefixed"),
        Duration::from_secs(5),
    )
    .expect("client");
    let err = client.query("up").await.expect_err("unauthorized");
    assert!(
        matches!(err, QueryError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong"), "{err}");

    let client =
        PrometheusClient::new(&format!("http://{exporter}/broken"), Duration::from_secs(5))
            .expect("client");
    let err = client.query("up").await.expect_err("a broken proxy");
    let text = err.to_string();
    assert!(
        matches!(err, QueryError::Status { status: 502, .. }),
        "{err:?}"
    );
    assert!(
        text.contains("502 Bad Gateway") && text.contains("/broken/api/v1/query"),
        "{text}"
    );

    // Nothing listens on a port just released.
    let closed = free_port();
    let client = PrometheusClient::new(
        &format!("http://{USER}:{PASSWORD}@127.0.0.1:{closed}"),
        Duration::from_secs(2),
    )
    .expect("client");
    let started = Instant::now();
    let err = client.query("up").await.expect_err("closed port");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), "transport", "{err:?}");
    let text = err.to_string();
    eprintln!("closed port: {text}");
    assert!(text.contains(&format!("127.0.0.1:{closed}")), "{text}");
    assert!(
        !text.contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD),
        "{text}"
    );
}
