//! Scripted answers for `tags/list`.

use std::time::Duration;

/// One answer the stub gives to a `tags/list` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The requested page of the configured tags.
    Ok,
    /// This HTTP status with a registry error body.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// 429 with this exact `Retry-After` text (beyond `u64`, negative, a date...).
    TooManyRequestsRaw(String),
    /// The normal answer after this delay.
    Slow(Duration),
    /// 200 with the JSON cut in half.
    Truncated,
    /// 200 with an HTML body.
    Garbage,
    /// 401 with a Bearer challenge whatever the request carries: as the default reply, a 401 loop.
    Unauthorized,
    /// Serves the first page, then fails the next page request with 500.
    PageFailure,
}

/// What the script decides for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Serve(Reply),
    /// Serve normally and keep the reply at the head of the script.
    ServeAndKeep,
}

/// Takes the next reply for a request; `continuation` is true for a page after the first.
pub fn next(
    script: &mut std::collections::VecDeque<Reply>,
    default: &Reply,
    continuation: bool,
) -> Step {
    match script.front() {
        Some(Reply::PageFailure) if !continuation => Step::ServeAndKeep,
        Some(Reply::PageFailure) => {
            script.pop_front();
            Step::Serve(Reply::Status(500))
        }
        Some(_) => Step::Serve(script.pop_front().unwrap_or(Reply::Ok)),
        None if *default == Reply::PageFailure => Step::Serve(if continuation {
            Reply::Status(500)
        } else {
            Reply::Ok
        }),
        None => Step::Serve(default.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn a_page_failure_waits_for_the_second_page() {
        let mut script = VecDeque::from([Reply::PageFailure]);
        assert_eq!(next(&mut script, &Reply::Ok, false), Step::ServeAndKeep);
        assert_eq!(
            next(&mut script, &Reply::Ok, true),
            Step::Serve(Reply::Status(500))
        );
        assert_eq!(next(&mut script, &Reply::Ok, true), Step::Serve(Reply::Ok));
    }

    #[test]
    fn the_default_follows_the_script() {
        let mut script = VecDeque::from([Reply::Status(503)]);
        assert_eq!(
            next(&mut script, &Reply::Unauthorized, false),
            Step::Serve(Reply::Status(503))
        );
        assert_eq!(
            next(&mut script, &Reply::Unauthorized, false),
            Step::Serve(Reply::Unauthorized)
        );
    }
}
