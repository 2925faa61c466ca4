//! Choosing the next tag for one container: the current tag, its policy and the registry's tag
//! list in; a [`Decision`] out. Pure: no I/O, no clock, no globals.
//!
//! # Rules, in the order each tag is checked
//! 1. `filtered`: the `tagwatch.dev/match` regex does not match the tag.
//! 2. `not-a-version` (semver policies) / `outside-policy` (glob/regex policies that do not
//!    match the tag).
//! 3. `not-newer`: the tag orders at or below the current tag. Precedence ignores build metadata
//!    and the `v` prefix, so `1.2.3+build.5` and `v1.2.3` are not newer than `1.2.3`: never a
//!    downgrade, never a sideways move.
//! 4. `outside-alias`: outside the alias being tracked.
//! 5. `outside-policy`: `patch` keeps major.minor, `minor` keeps major, `major` keeps nothing.
//! 6. `prerelease-channel`: a prerelease is allowed only if its channel (first prerelease
//!    identifier) is listed in `tagwatch.dev/prerelease` (`*` = any) or is the channel the
//!    current tag is on. A prerelease therefore follows its own channel — across versions, so
//!    `1.3.0-rc.2` may go to `1.4.0-rc.1` when the policy allows — and moves to any GA.
//! 7. `rejected`: the caller's rejected set names this tag, or a tag with the same version
//!    (precedence-equal: `v1.2.4` and `1.2.4+b` are rejected with `1.2.4`, since they are normally
//!    the same release).
//! 8. `gated`: a release gate holds this exact tag back ([`Request::gated`], filled by
//!    [`crate::plan::update::choose_gated`] as it walks the candidates newest first).
//!
//! The newest tag that passes is `chosen`; the others that passed are `superseded`. Among tags of
//! the same version the current tag's prefix style wins (`v1.2.4` over `1.2.4` when running
//! `v1.2.3`), then no build metadata over some, then the lexically greatest tag, so the choice
//! never depends on the order of the listing.
//!
//! # Aliases (semver policies only)
//! When the current tag is an alias (`app:1`, `app:v1.2`) it is the intent: there is no current
//! version, so the newest GA version inside the alias is chosen whatever the policy — that is how
//! a rollback to `app:1` works — and the decision returns the alias as `track` for the caller to
//! remember. Listed prerelease channels apply to aliases as they do to a GA deployment (a GA still
//! wins over its own prereleases by precedence). Later calls pass the remembered alias back in
//! [`Request::track`]; updates then stay inside it and inside the policy. A track that does not
//! contain the current version is stale (a person set another version by hand) and is dropped:
//! the decision returns `track: None`.
//!
//! # `glob:` and `regex:` policies
//! Candidates are the tags the pattern matches. A tag (or, for a regex with a named group
//! `version`, that group) that is a version is ordered by semver among versions; other tags are
//! ordered naturally (`build-10 > build-9`), and a version meets a non-version by its
//! `MAJOR.MINOR.PATCH` text. The prerelease-channel and rejected rules apply to version tags as
//! above. These policies do not track aliases — the pattern is the intent, and a tag like `7`
//! is just a build number there — so they always return `track: None`.
//!
//! # Policies that do not choose
//! `off` is a [`SkipReason::PolicyOff`]. `digest` keeps the tag (`UpToDate`, or a skip when the tag
//! is not in the listing); whether the digest behind it changed is
//! [`crate::plan::digest::resolve_digest`]'s decision.

use std::collections::BTreeSet;

use regex::Regex;
use semver::Version;
use serde::Serialize;

use super::explain::{Candidate, Verdict};
use super::ordering::{cmp_candidates, Key};
use super::skip::SkipReason;
use crate::model::alias::Alias;
use crate::model::channels::Channels;
use crate::model::policy::Policy;
use crate::model::tag::{channel, parse_version, Prefix, Tag};

/// Everything the resolver needs about one container, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The tag in the image reference now (`1.2.3`, `v1`, `latest`); empty when there is none.
    pub current: &'a str,
    pub policy: &'a Policy,
    /// `tagwatch.dev/prerelease`.
    pub channels: &'a Channels,
    /// `tagwatch.dev/match`.
    pub filter: Option<&'a Regex>,
    /// `tagwatch.dev/track`: the alias remembered from an earlier [`Decision`].
    pub track: Option<Alias>,
    /// Tags never to apply again (rolled back from, failed canaries).
    pub rejected: &'a BTreeSet<String>,
    /// Tags a release gate holds back (exactly these tags: another build of the same version
    /// is judged on its own).
    pub gated: &'a BTreeSet<String>,
    /// Fill in the per-tag explanation. Off on the hot path: it allocates one entry per tag.
    pub explain: bool,
}

static NO_REJECTED: BTreeSet<String> = BTreeSet::new();

impl<'a> Request<'a> {
    /// A request with no channels, filter, track or rejected tags, and no explanation.
    pub fn new(current: &'a str, policy: &'a Policy) -> Request<'a> {
        Request {
            current,
            policy,
            channels: &Channels::None,
            filter: None,
            track: None,
            rejected: &NO_REJECTED,
            gated: &NO_REJECTED,
            explain: false,
        }
    }

    pub fn channels(self, channels: &'a Channels) -> Request<'a> {
        Request { channels, ..self }
    }

    pub fn filter(self, filter: Option<&'a Regex>) -> Request<'a> {
        Request { filter, ..self }
    }

    pub fn track(self, track: Option<Alias>) -> Request<'a> {
        Request { track, ..self }
    }

    pub fn rejected(self, rejected: &'a BTreeSet<String>) -> Request<'a> {
        Request { rejected, ..self }
    }

    pub fn gated(self, gated: &'a BTreeSet<String>) -> Request<'a> {
        Request { gated, ..self }
    }

    pub fn explain(self, explain: bool) -> Request<'a> {
        Request { explain, ..self }
    }
}

/// The outcome for one container. Serialized with a `decision` field (`update`, `up-to-date`,
/// `skip`); an empty explanation is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Write `tag` (exactly as the registry lists it) and remember `track`
    /// (`tagwatch.dev/track`; `None` means remove it).
    Update {
        tag: String,
        track: Option<Alias>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        explanation: Vec<Candidate>,
    },
    /// Nothing newer is allowed. Remember `track` as for `Update`.
    UpToDate {
        track: Option<Alias>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        explanation: Vec<Candidate>,
    },
    /// Leave the workload alone and tell its owner why.
    Skip { reason: SkipReason },
}

impl Decision {
    /// The tag to write, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Decision::Update { tag, .. } => Some(tag),
            Decision::UpToDate { .. } | Decision::Skip { .. } => None,
        }
    }

    /// The alias to remember; `None` for a skip (keep whatever is stored) or to clear it.
    pub fn track(&self) -> Option<Alias> {
        match self {
            Decision::Update { track, .. } | Decision::UpToDate { track, .. } => *track,
            Decision::Skip { .. } => None,
        }
    }

    /// Per-tag verdicts, newest first; empty unless [`Request::explain`] was set.
    pub fn explanation(&self) -> &[Candidate] {
        match self {
            Decision::Update { explanation, .. } | Decision::UpToDate { explanation, .. } => {
                explanation
            }
            Decision::Skip { .. } => &[],
        }
    }
}

/// Chooses the next tag for `req.current` among `tags` (the registry's listing, any order,
/// duplicates harmless). See the module docs for the rules.
pub fn resolve<S: AsRef<str>>(req: &Request<'_>, tags: &[S]) -> Decision {
    if req.current.is_empty() {
        return Decision::Skip {
            reason: SkipReason::MissingTag,
        };
    }
    let rules = match req.policy {
        Policy::Off => {
            return Decision::Skip {
                reason: SkipReason::PolicyOff,
            }
        }
        Policy::Digest => return keep_tag(req, tags),
        Policy::Major | Policy::Minor | Policy::Patch => match semver_rules(req) {
            Ok(rules) => rules,
            Err(reason) => return Decision::Skip { reason },
        },
        Policy::Glob(_) | Policy::Regex(_) => pattern_rules(req),
    };
    rules.run(tags)
}

/// What the tags are measured against, settled once per request.
struct Rules<'r> {
    req: &'r Request<'r>,
    /// `None` when the current tag is an alias: nothing to be newer than.
    current: Option<Key<'r>>,
    /// The alias candidates must lie in (the current tag's, or a still-valid track).
    intent: Option<Alias>,
    /// The alias the image names, when it names one: an empty result is then a skip.
    current_alias: Option<&'r str>,
    /// The policy's bound as an alias: `patch` from `1.2.3` is `1.2`, `minor` is `1`.
    window: Option<Alias>,
    preferred: Prefix,
    rejected_versions: Vec<Version>,
}

fn semver_rules<'r>(req: &'r Request<'r>) -> Result<Rules<'r>, SkipReason> {
    let base = |current, intent, current_alias, window, preferred| Rules {
        req,
        current,
        intent,
        current_alias,
        window,
        preferred,
        rejected_versions: rejected_versions(req.rejected),
    };
    if let Some((prefix, version)) = parse_version(req.current) {
        let window = match req.policy {
            Policy::Patch => Some(Alias::new(version.major, Some(version.minor))),
            Policy::Minor => Some(Alias::new(version.major, None)),
            _ => None,
        };
        let intent = req.track.filter(|track| track.contains(&version));
        return Ok(base(
            Some(Key::version(req.current, prefix, version)),
            intent,
            None,
            window,
            prefix,
        ));
    }
    if let Tag::Alias(alias) = Tag::parse(req.current) {
        return Ok(base(
            None,
            Some(alias.alias()),
            Some(req.current),
            None,
            alias.prefix(),
        ));
    }
    Err(SkipReason::CurrentNotAVersion {
        tag: req.current.to_owned(),
        policy: req.policy.to_string(),
    })
}

fn pattern_rules<'r>(req: &'r Request<'r>) -> Rules<'r> {
    let ordering_text = match req.policy {
        Policy::Regex(regex) => regex.ordering_text(req.current).unwrap_or(req.current),
        _ => req.current,
    };
    let current = Key::of(ordering_text);
    let preferred = match &current {
        Key::Version { prefix, .. } => *prefix,
        Key::Natural(_) => Prefix::None,
    };
    Rules {
        req,
        current: Some(current),
        intent: None,
        current_alias: None,
        window: None,
        preferred,
        rejected_versions: rejected_versions(req.rejected),
    }
}

fn rejected_versions(rejected: &BTreeSet<String>) -> Vec<Version> {
    rejected
        .iter()
        .filter_map(|tag| parse_version(tag))
        .map(|(_, version)| version)
        .collect()
}

impl<'r> Rules<'r> {
    fn run<S: AsRef<str>>(&self, tags: &[S]) -> Decision {
        let explain = self.req.explain;
        let mut verdicts = Vec::with_capacity(if explain { tags.len() } else { 0 });
        let mut best: Option<(usize, &str, Key<'_>)> = None;
        for (index, tag) in tags.iter().enumerate() {
            let tag = tag.as_ref();
            let verdict = match self.judge(tag) {
                Ok(key) => {
                    let newer = best.as_ref().is_none_or(|(_, best_tag, best_key)| {
                        cmp_candidates((tag, &key), (best_tag, best_key), self.preferred).is_gt()
                    });
                    if newer {
                        best = Some((index, tag, key));
                    }
                    Verdict::Superseded
                }
                Err(verdict) => verdict,
            };
            if explain {
                verdicts.push(verdict);
            }
        }
        let explanation = match (explain, &best) {
            (false, _) => Vec::new(),
            (true, best) => {
                if let Some((index, _, _)) = best {
                    verdicts[*index] = Verdict::Chosen;
                }
                self.explanation(tags, &verdicts)
            }
        };
        match (best, self.current_alias) {
            (Some((_, tag, _)), _) => Decision::Update {
                tag: tag.to_owned(),
                track: self.intent,
                explanation,
            },
            (None, Some(alias)) => Decision::Skip {
                reason: SkipReason::AliasUnmatched {
                    alias: alias.to_owned(),
                    excluded: self.versions_inside_intent(tags),
                },
            },
            (None, None) => Decision::UpToDate {
                track: self.intent,
                explanation,
            },
        }
    }

    /// The tag's ordering key if it may be chosen, else the first rule it fails.
    fn judge<'t>(&self, tag: &'t str) -> Result<Key<'t>, Verdict> {
        if self.req.filter.is_some_and(|filter| !filter.is_match(tag)) {
            return Err(Verdict::Filtered);
        }
        let key = match self.req.policy {
            Policy::Glob(glob) if glob.matches(tag) => Key::of(tag),
            Policy::Regex(regex) => {
                Key::of(regex.ordering_text(tag).ok_or(Verdict::OutsidePolicy)?)
            }
            Policy::Glob(_) => return Err(Verdict::OutsidePolicy),
            _ => parse_version(tag)
                .map(|(prefix, version)| Key::version(tag, prefix, version))
                .ok_or(Verdict::NotAVersion)?,
        };
        if let Some(current) = &self.current {
            if key.cmp_precedence(current).is_le() {
                return Err(Verdict::NotNewer);
            }
        }
        let version = key.as_version();
        let inside = |alias: Alias| version.is_some_and(|version| alias.contains(version));
        if self.intent.is_some_and(|intent| !inside(intent)) {
            return Err(Verdict::OutsideAlias);
        }
        if self.window.is_some_and(|window| !inside(window)) {
            return Err(Verdict::OutsidePolicy);
        }
        if let Some(candidate_channel) = version.and_then(channel) {
            let current_channel = self
                .current
                .as_ref()
                .and_then(Key::as_version)
                .and_then(channel);
            let allowed = self.req.channels.allows(candidate_channel)
                || current_channel == Some(candidate_channel);
            if !allowed {
                return Err(Verdict::PrereleaseChannel);
            }
        }
        let rejected = self.req.rejected.contains(tag)
            || version.is_some_and(|version| {
                self.rejected_versions
                    .iter()
                    .any(|rejected| rejected.cmp_precedence(version).is_eq())
            });
        if rejected {
            return Err(Verdict::Rejected);
        }
        if self.req.gated.contains(tag) {
            return Err(Verdict::Gated);
        }
        Ok(key)
    }

    /// The key a tag is listed by in the explanation, whichever rule it failed.
    fn display_key<'t>(&self, tag: &'t str) -> Option<Key<'t>> {
        match self.req.policy {
            Policy::Regex(regex) => Some(Key::of(regex.ordering_text(tag).unwrap_or(tag))),
            Policy::Glob(_) => Some(Key::of(tag)),
            _ => parse_version(tag).map(|(prefix, version)| Key::version(tag, prefix, version)),
        }
    }

    /// Newest first in the same order the choice uses, then unordered tags alphabetically; one
    /// entry per distinct tag, so the explanation is a function of the set of tags too.
    fn explanation<S: AsRef<str>>(&self, tags: &[S], verdicts: &[Verdict]) -> Vec<Candidate> {
        let mut entries: Vec<(&str, Option<Key<'_>>, Verdict)> = tags
            .iter()
            .zip(verdicts)
            .map(|(tag, verdict)| (tag.as_ref(), self.display_key(tag.as_ref()), *verdict))
            .collect();
        entries.sort_unstable_by(|(a_tag, a_key, a_verdict), (b_tag, b_key, b_verdict)| {
            let by_key = match (a_key, b_key) {
                (Some(a), Some(b)) => cmp_candidates((b_tag, b), (a_tag, a), self.preferred),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a_tag.cmp(b_tag),
            };
            by_key.then_with(|| a_verdict.cmp(b_verdict))
        });
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries
            .into_iter()
            .map(|(tag, _, verdict)| Candidate {
                tag: tag.to_owned(),
                verdict,
            })
            .collect()
    }

    /// How many versions inside the alias exist at all, to tell "push a version" apart from
    /// "your filters excluded them" when nothing could be chosen.
    fn versions_inside_intent<S: AsRef<str>>(&self, tags: &[S]) -> usize {
        let Some(intent) = self.intent else {
            return 0;
        };
        let mut inside: Vec<&str> = tags
            .iter()
            .map(AsRef::as_ref)
            .filter(|tag| parse_version(tag).is_some_and(|(_, version)| intent.contains(&version)))
            .collect();
        inside.sort_unstable();
        inside.dedup();
        inside.len()
    }
}

/// `digest` policy: the tag stays as long as the registry still has it.
fn keep_tag<S: AsRef<str>>(req: &Request<'_>, tags: &[S]) -> Decision {
    if !tags.iter().any(|tag| tag.as_ref() == req.current) {
        return Decision::Skip {
            reason: SkipReason::TagNotInRegistry {
                tag: req.current.to_owned(),
            },
        };
    }
    let explanation = if req.explain {
        let mut distinct: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|tag| Candidate {
                tag: tag.to_owned(),
                verdict: if tag == req.current {
                    Verdict::NotNewer
                } else {
                    Verdict::OutsidePolicy
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    Decision::UpToDate {
        track: None,
        explanation,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
