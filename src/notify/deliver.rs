//! Delivery: one task per sink, fed by a bounded queue, POSTing each notice with a timeout and
//! retrying with exponential backoff and jitter.
//!
//! What to send ([`payload`]) and what to do after an answer ([`next`]) are pure; the task only
//! sends and sleeps. A sink's URL is a credential: it lives in [`SinkUrl`], whose `Debug` is
//! redacted, and transport errors are stripped of it before anything is logged.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::mpsc;

use super::settings::SinkKind;
use super::{cloudevents, slack, teams, webhook, Notice, Rule};
use crate::metrics::{Metrics, NotificationResult};

/// How delivery behaves; [`DeliveryOptions::default`] is what `tagwatch run` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Notices waiting per sink; one more is dropped (and counted).
    pub queue: usize,
    /// One POST, from connecting to the answer's status.
    pub timeout: Duration,
    /// Tries per notice, the first included.
    pub attempts: u32,
    /// The wait before the second try; doubled for each later one.
    pub backoff: Duration,
    /// The longest wait between tries, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            queue: 256,
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A sink's URL. Never printed: a Slack or Teams webhook URL lets anyone who reads it post.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkUrl(reqwest::Url);

impl SinkUrl {
    /// An `http` or `https` URL; the error never repeats the text.
    pub fn parse(text: &str) -> Result<SinkUrl, String> {
        let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the scheme must be http or https".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        Ok(SinkUrl(url))
    }

    /// `text` without this URL or its secret parts (path, query), should an error quote them.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(self.0.as_str(), "<url>");
        if let Some(query) = self.0.query().filter(|q| !q.is_empty()) {
            text = text.replace(query, "<redacted>");
        }
        let path = self.0.path();
        if path.len() > 1 {
            text = text.replace(path, "<redacted>");
        }
        text
    }
}

impl fmt::Debug for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The HMAC key of a signed sink.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A sink as configured and resolved: what [`start`] needs.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: SinkUrl,
    pub secret: Option<SigningKey>,
    pub rule: Rule,
    /// Slack: Approve / Deny buttons on `approval.required`.
    pub interactive: bool,
}

/// A running sink: its rule and the queue its delivery task reads.
pub struct Sink {
    name: String,
    kind: SinkKind,
    rule: Rule,
    tx: mpsc::Sender<Arc<Notice>>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Sink {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// False when the queue is full (or the task is gone): the caller counts a drop.
    pub(super) fn try_queue(&self, notice: Arc<Notice>) -> bool {
        self.tx.try_send(notice).is_ok()
    }
}

/// The HTTP client every sink shares. Redirects are not followed: a signed body goes where it
/// was configured to go, nowhere else.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tagwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::error::chain(&e.without_url()))
}

/// Starts the sink's delivery task (on the current Tokio runtime) and returns its handle; the
/// task ends once every handle is dropped and its queue is empty.
pub fn start(
    config: SinkConfig,
    options: &DeliveryOptions,
    http: reqwest::Client,
    metrics: Metrics,
) -> Sink {
    let (tx, rx) = mpsc::channel(options.queue.max(1));
    let sink = Sink {
        name: config.name.clone(),
        kind: config.kind,
        rule: config.rule.clone(),
        tx,
    };
    tokio::spawn(run(config, options.clone(), http, metrics, rx));
    sink
}

/// What is sent for a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `X-Tagwatch-Signature`, for a signed sink.
    pub signature: Option<String>,
}

pub fn payload(kind: SinkKind, notice: &Notice, secret: Option<&SigningKey>) -> Payload {
    render(kind, notice, secret, false)
}

/// As [`payload`]; `interactive`: a Slack message may carry buttons.
pub fn render(
    kind: SinkKind,
    notice: &Notice,
    secret: Option<&SigningKey>,
    interactive: bool,
) -> Payload {
    let (content_type, value) = match kind {
        SinkKind::Slack => ("application/json", slack::body(notice, interactive)),
        SinkKind::Teams => ("application/json", teams::body(notice)),
        SinkKind::Webhook => ("application/json", webhook::body(notice)),
        SinkKind::CloudEvents => (cloudevents::CONTENT_TYPE, cloudevents::body(notice)),
    };
    // A `Value` always serializes.
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let signature = secret
        .filter(|_| kind.signs())
        .map(|key| webhook::signature(&key.0, &body));
    Payload {
        content_type,
        body,
        signature,
    }
}

/// How one try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    /// No answer (refused, reset, DNS, TLS); the text never holds the URL.
    Transport(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status { code, .. } => write!(f, "HTTP {code}"),
            Answer::Timeout => f.write_str("no answer in time"),
            Answer::Transport(why) => f.write_str(why),
        }
    }
}

/// What to do after a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Sent,
    Retry(Duration),
    GiveUp,
}

/// After try number `attempt` (from 1) answered `answer`: done, again after a while, or give up.
/// Transport errors, timeouts, 429 and 5xx may pass; any other answer will not change by
/// asking again (a revoked Slack URL answers 404 or 410 for ever). `jitter` in [0, 1) spreads
/// the waits of sinks that failed together.
pub fn next(answer: &Answer, attempt: u32, options: &DeliveryOptions, jitter: f64) -> Next {
    let retryable = match answer {
        Answer::Status { code, .. } if (200..300).contains(code) => return Next::Sent,
        Answer::Status { code, .. } => *code == 429 || (500..600).contains(code),
        Answer::Timeout | Answer::Transport(_) => true,
    };
    if !retryable || attempt >= options.attempts {
        return Next::GiveUp;
    }
    let exponent = attempt.saturating_sub(1).min(20);
    let full = options
        .backoff
        .saturating_mul(1 << exponent)
        .min(options.max_backoff);
    // Half the wait fixed, half random ("equal jitter"): never much sooner than asked.
    let wait = full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
    let wait = match answer {
        Answer::Status {
            retry_after: Some(asked),
            ..
        } => wait.max(*asked).min(options.max_backoff),
        _ => wait,
    };
    Next::Retry(wait)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from webhook receivers: backoff then).
pub fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn run(
    config: SinkConfig,
    options: DeliveryOptions,
    http: reqwest::Client,
    metrics: Metrics,
    mut rx: mpsc::Receiver<Arc<Notice>>,
) {
    while let Some(notice) = rx.recv().await {
        let payload = render(
            config.kind,
            &notice,
            config.secret.as_ref(),
            config.interactive,
        );
        let mut attempt = 1;
        loop {
            let answer = send(&http, &config.url, &payload, options.timeout).await;
            match next(&answer, attempt, &options, rand::random()) {
                Next::Sent => {
                    metrics.notification(&config.name, NotificationResult::Sent);
                    tracing::debug!(sink = %config.name, event = notice.event.name(),
                        workload = %notice.regarding, attempt, "notification sent");
                    break;
                }
                Next::Retry(wait) => {
                    tracing::debug!(sink = %config.name, event = notice.event.name(),
                        workload = %notice.regarding, attempt, answer = %answer,
                        wait = ?wait, "notification not delivered; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Next::GiveUp => {
                    metrics.notification(&config.name, NotificationResult::Failed);
                    tracing::warn!(sink = %config.name, event = notice.event.name(),
                        workload = %notice.regarding, attempts = attempt, answer = %answer,
                        "notification not delivered; given up");
                    break;
                }
            }
        }
    }
}

async fn send(
    http: &reqwest::Client,
    url: &SinkUrl,
    payload: &Payload,
    timeout: Duration,
) -> Answer {
    let mut request = http
        .post(url.0.clone())
        .timeout(timeout)
        .header(CONTENT_TYPE, payload.content_type)
        .body(payload.body.clone());
    if let Some(signature) = &payload.signature {
        request = request.header(webhook::SIGNATURE_HEADER, signature);
    }
    // reqwest's own timeout covers the request; this one also bounds a receiver that never
    // finishes its answer's headers in a way the client does not notice.
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => Answer::Timeout,
        Ok(Err(e)) if e.is_timeout() => Answer::Timeout,
        Ok(Err(e)) => Answer::Transport(url.scrub(&crate::error::chain(&e.without_url()))),
        Ok(Ok(response)) => Answer::Status {
            code: response.status().as_u16(),
            retry_after: retry_after(response.headers().get(RETRY_AFTER)),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::notify::tests::notice;
    use crate::notify::{Event, Notifier};

    const SECRET_URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX?sig=abc123";

    fn options() -> DeliveryOptions {
        DeliveryOptions::default()
    }

    #[test]
    fn what_to_do_after_each_answer() {
        let s = Duration::from_secs;
        let status = |code| Answer::Status {
            code,
            retry_after: None,
        };
        let asked = |secs| Answer::Status {
            code: 429,
            retry_after: Some(s(secs)),
        };
        let cases: &[(Answer, u32, f64, Next)] = &[
            (status(200), 1, 0.0, Next::Sent),
            (status(202), 3, 0.0, Next::Sent),
            // Retried: transport, timeouts, 429, 5xx; waits 1 s, 2 s, 4 s, 8 s (jitter 0: half).
            (
                Answer::Transport("refused".into()),
                1,
                0.0,
                Next::Retry(Duration::from_millis(500)),
            ),
            (Answer::Timeout, 2, 0.0, Next::Retry(s(1))),
            (status(503), 3, 0.5, Next::Retry(s(3))),
            (status(500), 4, 0.5, Next::Retry(Duration::from_secs(6))),
            (status(429), 1, 0.0, Next::Retry(Duration::from_millis(500))),
            // Retry-After is honoured, clamped to the longest wait.
            (asked(7), 1, 0.0, Next::Retry(s(7))),
            (asked(3600), 1, 0.0, Next::Retry(s(60))),
            // Never more than five tries.
            (status(503), 5, 0.0, Next::GiveUp),
            (Answer::Timeout, 5, 0.0, Next::GiveUp),
            // Another answer will not change by asking again.
            (status(400), 1, 0.0, Next::GiveUp),
            (status(404), 1, 0.0, Next::GiveUp),
            (status(410), 1, 0.0, Next::GiveUp),
            (status(302), 1, 0.0, Next::GiveUp),
        ];
        for (answer, attempt, jitter, want) in cases {
            assert_eq!(
                &next(answer, *attempt, &options(), *jitter),
                want,
                "{answer:?} #{attempt}"
            );
        }
        // The doubling stops at the longest wait.
        assert_eq!(
            next(
                &Answer::Timeout,
                30,
                &DeliveryOptions {
                    attempts: 99,
                    ..options()
                },
                0.5
            ),
            Next::Retry(s(45))
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert_eq!(retry_after(Some(&h("12"))), Some(Duration::from_secs(12)));
        assert_eq!(retry_after(Some(&h("Wed, 21 Oct 2015 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn only_webhook_and_cloudevents_are_signed() {
        let n = notice(Event::UpdateApplied, "shop");
        let key = SigningKey(b"k".to_vec());
        for kind in [SinkKind::Slack, SinkKind::Teams] {
            assert_eq!(payload(kind, &n, Some(&key)).signature, None);
        }
        let signed = payload(SinkKind::Webhook, &n, Some(&key));
        assert_eq!(
            signed.signature.as_deref(),
            Some(webhook::signature(b"k", &signed.body).as_str())
        );
        let event = payload(SinkKind::CloudEvents, &n, Some(&key));
        assert_eq!(event.content_type, "application/cloudevents+json");
        assert!(event.signature.is_some());
        assert_eq!(payload(SinkKind::Webhook, &n, None).signature, None);
    }

    #[test]
    fn urls_must_be_http_and_errors_never_repeat_them() {
        for bad in [
            "ftp://x/y",
            "hooks.slack.com/services/T/B/secret",
            "http://",
        ] {
            let e = SinkUrl::parse(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains(bad), "{e}");
        }
        assert!(SinkUrl::parse("http://127.0.0.1:8080/hook").is_ok());
    }

    #[tokio::test]
    async fn the_url_never_shows_in_debug_or_errors() {
        let url = SinkUrl::parse(SECRET_URL).unwrap();
        let config = SinkConfig {
            name: "ops".into(),
            kind: SinkKind::Slack,
            url: url.clone(),
            secret: Some(SigningKey(b"hmac-key".to_vec())),
            rule: Rule::default(),
            interactive: false,
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("XXXXsecretXXXX") && !shown.contains("hmac-key"),
            "{shown}"
        );
        assert!(shown.contains("ops"), "{shown}");
        let metrics = Metrics::unregistered().unwrap();
        let sink = start(config, &options(), client().unwrap(), metrics.clone());
        let notifier = Notifier::new(vec![sink], metrics);
        let shown = format!("{notifier:?}");
        assert!(!shown.contains("XXXX") && shown.contains("ops"), "{shown}");
        // A transport error that quoted the URL (or its secret path or query) is scrubbed.
        let quoted = format!(
            "error sending request for url ({SECRET_URL}): /services/T000/B000/XXXXsecretXXXX sig=abc123"
        );
        let scrubbed = url.scrub(&quoted);
        assert!(
            !scrubbed.contains("XXXXsecretXXXX") && !scrubbed.contains("abc123"),
            "{scrubbed}"
        );
        // And a real failed send (nothing listens on port 1) says why without the URL.
        let http = client().unwrap();
        let dead = SinkUrl::parse("http://127.0.0.1:1/services/T000/B000/XXXXsecretXXXX").unwrap();
        let p = payload(SinkKind::Slack, &notice(Event::Rollback, "shop"), None);
        let answer = send(&http, &dead, &p, Duration::from_secs(5)).await;
        let text = format!("{answer} {answer:?}");
        assert!(matches!(answer, Answer::Transport(_)), "{text}");
        assert!(
            !text.contains("XXXXsecretXXXX") && !text.contains("127.0.0.1:1/"),
            "{text}"
        );
    }

    /// On a current-thread runtime the delivery task cannot run before the test yields, so the
    /// queue fills deterministically.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        let config = SinkConfig {
            name: "ops".into(),
            kind: SinkKind::Webhook,
            url: SinkUrl::parse("http://127.0.0.1:1/hook").unwrap(),
            secret: None,
            rule: Rule {
                default: true,
                ..Rule::default()
            },
            interactive: false,
        };
        let options = DeliveryOptions {
            queue: 2,
            ..options()
        };
        let sink = start(config, &options, client().unwrap(), metrics.clone());
        let notifier = Notifier::new(vec![sink], metrics);
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains(r#"tagwatch_notifications_total{result="dropped",sink="ops"} 0"#),
            "{text}"
        );
        for _ in 0..5 {
            notifier.offer(notice(Event::UpdateApplied, "shop"));
        }
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains(r#"tagwatch_notifications_total{result="dropped",sink="ops"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tagwatch_notifications_total{result="sent",sink="ops"} 0"#),
            "{text}"
        );
    }
}
