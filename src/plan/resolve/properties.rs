//! Property tests: random tag sets against an independent statement of the rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::select;
use semver::Version;

use super::*;
use crate::plan::ordering::Key;

fn version_tag() -> impl Strategy<Value = String> {
    let pre = prop_oneof![
        3 => Just(String::new()),
        1 => (select(vec!["rc", "beta"]), 0u64..12).prop_map(|(c, n)| format!("-{c}.{n}")),
        1 => select(vec!["-rc", "-beta"]).prop_map(str::to_owned),
    ];
    let build = prop_oneof![
        3 => Just(String::new()),
        1 => (0u64..3).prop_map(|n| format!("+build.{n}")),
    ];
    (select(vec!["", "v"]), 0u64..3, 0u64..3, 0u64..4, pre, build).prop_map(
        |(prefix, major, minor, patch, pre, build)| {
            format!("{prefix}{major}.{minor}.{patch}{pre}{build}")
        },
    )
}

fn alias_tag() -> impl Strategy<Value = String> {
    (
        select(vec!["", "v"]),
        0u64..3,
        proptest::option::of(0u64..3),
    )
        .prop_map(|(prefix, major, minor)| match minor {
            Some(minor) => format!("{prefix}{major}.{minor}"),
            None => format!("{prefix}{major}"),
        })
}

fn junk_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "latest",
            "01.2.3",
            "1.02.3",
            "2024.01.15",
            "1.2.3.4",
            "stable"
        ])
        .prop_map(str::to_owned),
        "main-[0-9a-f]{4}",
        alias_tag(),
    ]
}

fn tags() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(prop_oneof![4 => version_tag(), 1 => junk_tag()], 0..24)
}

#[derive(Debug, Clone)]
struct Scenario {
    current: String,
    policy: Policy,
    channels: Channels,
    filter: Option<Regex>,
    track: Option<Alias>,
    rejected: BTreeSet<String>,
    tags: Vec<String>,
}

impl Scenario {
    fn request(&self) -> Request<'_> {
        Request::new(&self.current, &self.policy)
            .channels(&self.channels)
            .filter(self.filter.as_ref())
            .track(self.track)
            .rejected(&self.rejected)
    }
}

fn semver_scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![3 => version_tag(), 1 => alias_tag()],
        select(vec![Policy::Major, Policy::Minor, Policy::Patch]),
        select(vec!["", "rc", "beta", "rc,beta", "*"]),
        proptest::option::of(select(vec!["^v", r"\.[01]\.", "^[0-9]", "[^4]$"])),
        proptest::option::of(alias_tag()),
        proptest::collection::btree_set(version_tag(), 0..3),
        tags(),
    )
        .prop_map(
            |(current, policy, channels, filter, track, rejected, tags)| Scenario {
                current,
                policy,
                channels: channels.parse().unwrap(),
                filter: filter.map(|filter| Regex::new(filter).unwrap()),
                track: track.map(|track| track.parse().unwrap()),
                rejected,
                tags,
            },
        )
}

fn version_of(tag: &str) -> Option<Version> {
    parse_version(tag).map(|(_, version)| version)
}

/// The rules restated plainly, independent of the resolver's structure.
fn eligible(s: &Scenario, tag: &str) -> bool {
    let Some(version) = version_of(tag) else {
        return false;
    };
    if s.filter
        .as_ref()
        .is_some_and(|filter| !filter.is_match(tag))
    {
        return false;
    }
    let rejected = s.rejected.contains(tag)
        || s.rejected
            .iter()
            .filter_map(|rejected| version_of(rejected))
            .any(|rejected| rejected.cmp_precedence(&version).is_eq());
    if rejected {
        return false;
    }
    let candidate_channel = channel(&version);
    match Tag::parse(&s.current) {
        Tag::Version(current) => {
            let current = current.version();
            let in_policy = match s.policy {
                Policy::Patch => version.major == current.major && version.minor == current.minor,
                Policy::Minor => version.major == current.major,
                _ => true,
            };
            let in_track = match s.track {
                Some(track) if track.contains(current) => track.contains(&version),
                _ => true,
            };
            let channel_ok = candidate_channel.is_none_or(|candidate| {
                s.channels.allows(candidate) || channel(current) == Some(candidate)
            });
            version.cmp_precedence(current).is_gt() && in_policy && in_track && channel_ok
        }
        Tag::Alias(alias) => {
            alias.alias().contains(&version)
                && candidate_channel.is_none_or(|candidate| s.channels.allows(candidate))
        }
        Tag::Other(_) => false,
    }
}

/// The prefix style the spelling tie-break prefers.
fn style(tag: &str) -> Prefix {
    Prefix::split(tag).0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_choice_is_the_newest_tag_the_rules_allow(s in semver_scenario()) {
        let decision = resolve(&s.request(), &s.tags);
        let allowed: Vec<&String> = s.tags.iter().filter(|tag| eligible(&s, tag)).collect();
        match &decision {
            Decision::Update { tag, .. } => {
                prop_assert!(s.tags.contains(tag), "{} is not in the listing", tag);
                prop_assert!(eligible(&s, tag), "{} breaks a rule", tag);
                let chosen = version_of(tag).unwrap();
                for other in &allowed {
                    let other_version = version_of(other).unwrap();
                    prop_assert!(other_version.cmp_precedence(&chosen).is_le(), "{} is newer than {}", other, tag);
                    // Same version spelled twice: the current tag's style wins when it can.
                    if other_version.cmp_precedence(&chosen).is_eq() && style(other) == style(&s.current) {
                        prop_assert_eq!(style(tag), style(&s.current));
                    }
                }
            }
            Decision::UpToDate { .. } => prop_assert!(allowed.is_empty(), "missed {:?}", allowed),
            Decision::Skip { reason } => {
                prop_assert!(allowed.is_empty(), "missed {:?}", allowed);
                let alias_current = matches!(Tag::parse(&s.current), Tag::Alias(_));
                prop_assert!(alias_current, "unexpected skip {}", reason);
            }
        }
    }

    #[test]
    fn never_a_downgrade(s in semver_scenario()) {
        if let (Some(current), Some(tag)) = (version_of(&s.current), resolve(&s.request(), &s.tags).tag()) {
            prop_assert!(version_of(tag).unwrap().cmp_precedence(&current).is_gt());
        }
    }

    #[test]
    fn the_track_is_the_alias_or_a_track_that_still_holds(s in semver_scenario()) {
        let decision = resolve(&s.request(), &s.tags);
        let expected = match Tag::parse(&s.current) {
            Tag::Alias(alias) => Some(alias.alias()),
            Tag::Version(current) => s.track.filter(|track| track.contains(current.version())),
            Tag::Other(_) => None,
        };
        if !matches!(decision, Decision::Skip { .. }) {
            prop_assert_eq!(decision.track(), expected);
        }
    }

    #[test]
    fn resolving_again_from_the_choice_is_up_to_date(s in semver_scenario()) {
        if let Decision::Update { tag, track, .. } = resolve(&s.request(), &s.tags) {
            let again = Scenario { current: tag, track, ..s.clone() };
            prop_assert_eq!(
                resolve(&again.request(), &again.tags),
                Decision::UpToDate { track, explanation: vec![] }
            );
        }
    }

    #[test]
    fn the_order_of_the_listing_does_not_matter(
        (s, shuffled) in semver_scenario().prop_flat_map(|s| {
            let shuffled = Just(s.tags.clone()).prop_shuffle();
            (Just(s), shuffled)
        })
    ) {
        let explained = s.request().explain(true);
        prop_assert_eq!(resolve(&explained, &s.tags), resolve(&explained, &shuffled));
    }

    #[test]
    fn the_explanation_matches_the_decision(s in semver_scenario()) {
        let plain = resolve(&s.request(), &s.tags);
        let explained = resolve(&s.request().explain(true), &s.tags);
        prop_assert_eq!(plain.tag(), explained.tag());
        prop_assert_eq!(plain.track(), explained.track());
        if let Decision::Skip { .. } = explained {
            return Ok(());
        }
        let distinct: BTreeSet<&str> = s.tags.iter().map(String::as_str).collect();
        let listed: Vec<&str> = explained.explanation().iter().map(|c| c.tag.as_str()).collect();
        prop_assert_eq!(listed.len(), distinct.len());
        prop_assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), distinct);
        let chosen: Vec<&str> = explained
            .explanation()
            .iter()
            .filter(|c| c.verdict == Verdict::Chosen)
            .map(|c| c.tag.as_str())
            .collect();
        prop_assert_eq!(chosen, explained.tag().into_iter().collect::<Vec<_>>());
        for candidate in explained.explanation() {
            let passed = matches!(candidate.verdict, Verdict::Chosen | Verdict::Superseded);
            prop_assert_eq!(passed, eligible(&s, &candidate.tag), "{:?}", candidate);
        }
    }
}

fn pattern_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..30).prop_map(|n| format!("build-{n}")),
        (0u32..30).prop_map(|n| format!("build-{n:03}")),
        (0u32..30).prop_map(|n| format!("nightly-{n}")),
        version_tag().prop_map(|version| format!("build-{version}")),
        version_tag(),
        (2023u32..2025, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}.{m:02}.{d}")),
    ]
}

fn pattern_scenario() -> impl Strategy<Value = Scenario> {
    (
        pattern_tag(),
        select(vec![
            "glob:build-*",
            "glob:*",
            r"regex:^build-\d+$",
            "regex:^build-(?P<version>.+)$",
            r"regex:^\d{4}\.",
        ]),
        select(vec!["", "rc", "*"]),
        proptest::collection::btree_set(pattern_tag(), 0..3),
        proptest::collection::vec(pattern_tag(), 0..24),
    )
        .prop_map(|(current, policy, channels, rejected, tags)| Scenario {
            current,
            policy: policy.parse().unwrap(),
            channels: channels.parse().unwrap(),
            filter: None,
            track: None,
            rejected,
            tags,
        })
}

fn ordering_key<'t>(policy: &Policy, tag: &'t str) -> Key<'t> {
    match policy {
        Policy::Regex(regex) => Key::of(regex.ordering_text(tag).unwrap_or(tag)),
        _ => Key::of(tag),
    }
}

fn matches_pattern(policy: &Policy, tag: &str) -> bool {
    match policy {
        Policy::Glob(glob) => glob.matches(tag),
        Policy::Regex(regex) => regex.ordering_text(tag).is_some(),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patterns_pick_a_newer_matching_tag_and_settle(
        (s, shuffled) in pattern_scenario().prop_flat_map(|s| {
            let shuffled = Just(s.tags.clone()).prop_shuffle();
            (Just(s), shuffled)
        })
    ) {
        let decision = resolve(&s.request(), &s.tags);
        prop_assert_eq!(&decision, &resolve(&s.request(), &shuffled));
        prop_assert_eq!(decision.track(), None);
        match decision {
            Decision::Update { tag, .. } => {
                prop_assert!(matches_pattern(&s.policy, &tag));
                prop_assert!(!s.rejected.contains(&tag));
                let current = ordering_key(&s.policy, &s.current);
                prop_assert!(ordering_key(&s.policy, &tag).cmp_precedence(&current).is_gt());
                let again = Scenario { current: tag, ..s.clone() };
                prop_assert_eq!(
                    resolve(&again.request(), &again.tags),
                    Decision::UpToDate { track: None, explanation: vec![] }
                );
            }
            Decision::UpToDate { .. } => {}
            Decision::Skip { reason } => prop_assert!(false, "unexpected skip {}", reason),
        }
    }
}
