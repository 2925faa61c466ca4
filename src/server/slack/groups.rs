//! Who is in a Slack user group: `usergroups.users.list` on Slack's Web API, asked with a bot
//! token, answers cached for a minute (a burst of clicks asks once; Slack rate-limits the
//! method) and bounded in time and size, since the click must be answered within 3 s.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bot token (`xoxb-…`): printed `<redacted>`, never in an error.
#[derive(Clone)]
pub struct BotToken(pub Arc<str>);

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How long a group's members are trusted: a person removed from the group may still approve
/// for this long.
pub const CACHE_FOR: Duration = Duration::from_secs(60);
/// One request to Slack's API; the whole look-up is bounded by the caller too.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// A group's member list larger than this is not read (a 10,000-member group is about 120 kB).
const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("Slack's API did not answer in time")]
    Timeout,
    #[error("Slack's API could not be reached: {0}")]
    Transport(String),
    #[error("Slack's API answered HTTP {0}")]
    Status(u16),
    #[error("Slack's API refused: {0}")]
    Slack(String),
    #[error("Slack's API answered something unreadable")]
    Unreadable,
}

/// A group's members and when Slack said so.
type Cached = (Instant, Arc<BTreeSet<String>>);

/// The members of the allowed groups, asked as needed.
#[derive(Clone)]
pub struct Groups {
    http: reqwest::Client,
    /// `…/usergroups.users.list`.
    method: reqwest::Url,
    token: BotToken,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Groups")
            .field("method", &self.method.as_str())
            .finish_non_exhaustive()
    }
}

impl Groups {
    /// Asks `api` (Slack's Web API base, e.g. `https://slack.com/api`) with `token`.
    pub fn new(http: reqwest::Client, api: &reqwest::Url, token: BotToken) -> Groups {
        let mut method = api.clone();
        let path = format!(
            "{}/usergroups.users.list",
            method.path().trim_end_matches('/')
        );
        method.set_path(&path);
        Groups {
            http,
            method,
            token,
            cache: Arc::default(),
        }
    }

    /// Whether `user` is in any of `groups`. A group that cannot be asked counts as an error
    /// only when no other group admits the user: the look-up fails closed.
    pub async fn admits(&self, groups: &[String], user: &str) -> Result<bool, GroupError> {
        let answers = futures::future::join_all(groups.iter().map(|g| self.members(g))).await;
        let mut failed = None;
        for answer in answers {
            match answer {
                Ok(members) if members.contains(user) => return Ok(true),
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(false), Err)
    }

    async fn members(&self, group: &str) -> Result<Arc<BTreeSet<String>>, GroupError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, members)) = cache.get(group) {
                if at.elapsed() < CACHE_FOR {
                    return Ok(members.clone());
                }
            }
        }
        let members = Arc::new(
            tokio::time::timeout(REQUEST_TIMEOUT, self.ask(group))
                .await
                .map_err(|_| GroupError::Timeout)??,
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded by the allow-list: only configured groups are ever asked.
        cache.insert(group.to_string(), (Instant::now(), members.clone()));
        Ok(members)
    }

    async fn ask(&self, group: &str) -> Result<BTreeSet<String>, GroupError> {
        let mut response = self
            .http
            .get(self.method.clone())
            .query(&[("usergroup", group)])
            .bearer_auth(&*self.token.0)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| GroupError::Transport(crate::error::chain(&e.without_url())))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(GroupError::Status(status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| GroupError::Transport(crate::error::chain(&e.without_url())))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_ANSWER {
                return Err(GroupError::Unreadable);
            }
            body.extend_from_slice(&chunk);
        }
        members(&body)
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    users: Vec<String>,
    error: Option<String>,
}

/// The members in an answer of `usergroups.users.list` (pure).
fn members(body: &[u8]) -> Result<BTreeSet<String>, GroupError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|_| GroupError::Unreadable)?;
    if !answer.ok {
        let why: String = answer
            .error
            .unwrap_or_else(|| "no reason given".into())
            .chars()
            .take(100)
            .collect();
        return Err(GroupError::Slack(why));
    }
    Ok(answer.users.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_or_refused() {
        assert_eq!(
            members(br#"{"ok": true, "users": ["U1", "W2"]}"#),
            Ok(BTreeSet::from(["U1".to_string(), "W2".to_string()]))
        );
        assert_eq!(
            members(br#"{"ok": false, "error": "missing_scope"}"#),
            Err(GroupError::Slack("missing_scope".into()))
        );
        assert_eq!(members(b"<html>"), Err(GroupError::Unreadable));
        assert_eq!(members(br#"{"ok": true}"#), Ok(BTreeSet::new()));
    }

    #[test]
    fn the_token_never_prints() {
        let token = BotToken("xoxb-secret".into());
        assert_eq!(format!("{token:?}"), "<redacted>");
    }
}
