//! Table tests: one row per behaviour of the specification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use super::*;
use crate::model::filter::parse_filter;

#[derive(Debug, Clone, Copy)]
enum Expect<'a> {
    Update(&'a str),
    /// The tag and the track the caller must remember.
    UpdateTracking(&'a str, &'a str),
    UpToDate,
    UpToDateTracking(&'a str),
    Skip(&'a str),
}

#[derive(Debug, Clone, Copy)]
struct Case<'a> {
    name: &'a str,
    current: &'a str,
    policy: &'a str,
    channels: &'a str,
    filter: Option<&'a str>,
    track: Option<&'a str>,
    rejected: &'a [&'a str],
    tags: &'a [&'a str],
    expect: Expect<'a>,
}

const CASE: Case<'static> = Case {
    name: "",
    current: "",
    policy: "minor",
    channels: "",
    filter: None,
    track: None,
    rejected: &[],
    tags: &[],
    expect: Expect::UpToDate,
};

fn decide(case: &Case<'_>, explain: bool) -> Decision {
    let policy: Policy = case.policy.parse().unwrap();
    let channels: Channels = case.channels.parse().unwrap();
    let filter = case.filter.map(|filter| parse_filter(filter).unwrap());
    let rejected: BTreeSet<String> = case.rejected.iter().map(|t| t.to_string()).collect();
    let request = Request::new(case.current, &policy)
        .channels(&channels)
        .filter(filter.as_ref())
        .track(case.track.map(|track| track.parse().unwrap()))
        .rejected(&rejected)
        .explain(explain);
    resolve(&request, case.tags)
}

fn check(cases: &[Case<'_>]) {
    for case in cases {
        let decision = decide(case, false);
        let alias = |text: &str| Some(text.parse::<Alias>().unwrap());
        let ok = match case.expect {
            Expect::Update(tag) => decision.tag() == Some(tag) && decision.track().is_none(),
            Expect::UpdateTracking(tag, track) => {
                decision.tag() == Some(tag) && decision.track() == alias(track)
            }
            Expect::UpToDate => {
                decision
                    == Decision::UpToDate {
                        track: None,
                        explanation: vec![],
                    }
            }
            Expect::UpToDateTracking(track) => {
                decision
                    == Decision::UpToDate {
                        track: alias(track),
                        explanation: vec![],
                    }
            }
            Expect::Skip(kind) => {
                matches!(&decision, Decision::Skip { reason } if reason.kind() == kind)
            }
        };
        assert!(
            ok,
            "{}: expected {:?}, got {decision:?}",
            case.name, case.expect
        );
        // The explanation is optional detail: asking for it never changes the outcome.
        let explained = decide(case, true);
        assert_eq!(explained.tag(), decision.tag(), "{}", case.name);
        assert_eq!(explained.track(), decision.track(), "{}", case.name);
        let mut reversed = *case;
        let tags: Vec<&str> = case.tags.iter().rev().copied().collect();
        reversed.tags = &tags;
        assert_eq!(decide(&reversed, true), explained, "{}: order", case.name);
    }
}

#[test]
fn semver_policies() {
    let mixed = &["1.9.3", "1.9.4", "1.10.0", "2.0.0"];
    check(&[
        Case {
            name: "minor: 1.9.3 -> 1.10.0, numbers compare as numbers",
            current: "1.9.3",
            tags: mixed,
            expect: Expect::Update("1.10.0"),
            ..CASE
        },
        Case {
            name: "patch stays in 1.9",
            current: "1.9.3",
            policy: "patch",
            tags: mixed,
            expect: Expect::Update("1.9.4"),
            ..CASE
        },
        Case {
            name: "major takes anything newer",
            current: "1.9.3",
            policy: "major",
            tags: mixed,
            expect: Expect::Update("2.0.0"),
            ..CASE
        },
        Case {
            name: "patch never crosses a minor",
            current: "1.2.3",
            policy: "patch",
            tags: &["1.3.0", "1.3.1", "2.0.0", "1.2.3"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "minor never crosses a major",
            current: "1.2.3",
            tags: &["2.0.0", "3.1.0"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "a registry holding only older tags: no update, never a downgrade",
            current: "1.2.3",
            policy: "major",
            tags: &["1.0.0", "1.2.2", "0.9.9", "1.2.3", "1.2.3-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "an empty listing",
            current: "1.2.3",
            policy: "major",
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "leading-zero tags are not versions",
            current: "1.2.3",
            policy: "major",
            tags: &["1.2.04", "01.3.0", "1.02.5", "2.0.0-rc.01"],
            channels: "*",
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "aliases and junk in the listing are not candidates",
            current: "1.2.3",
            policy: "major",
            tags: &[
                "1",
                "1.3",
                "v2",
                "latest",
                "main-3f2a1c",
                "2024.01.15",
                "1.2.3.4",
            ],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "a pre-1.0 version follows the same rules",
            current: "0.1.0",
            tags: &["0.2.0", "1.0.0"],
            expect: Expect::Update("0.2.0"),
            ..CASE
        },
    ]);
}

#[test]
fn exact_tag_strings_and_spelling_ties() {
    check(&[
        Case {
            name: "v1.2.3 with v1.2.10 and 1.2.4 -> v1.2.10",
            current: "v1.2.3",
            policy: "patch",
            tags: &["v1.2.10", "1.2.4", "v1.2.3"],
            expect: Expect::Update("v1.2.10"),
            ..CASE
        },
        Case {
            name: "an unprefixed tag is written unprefixed when it is the newest",
            current: "v1.2.3",
            policy: "patch",
            tags: &["v1.2.4", "1.2.5"],
            expect: Expect::Update("1.2.5"),
            ..CASE
        },
        Case {
            name: "same version twice: the current tag's style wins (v)",
            current: "v1.2.3",
            tags: &["1.2.4", "v1.2.4"],
            expect: Expect::Update("v1.2.4"),
            ..CASE
        },
        Case {
            name: "same version twice: the current tag's style wins (bare)",
            current: "1.2.3",
            tags: &["v1.2.4", "1.2.4"],
            expect: Expect::Update("1.2.4"),
            ..CASE
        },
        Case {
            name: "same version twice: V is its own style",
            current: "V1.2.3",
            tags: &["v1.2.4", "V1.2.4", "1.2.4"],
            expect: Expect::Update("V1.2.4"),
            ..CASE
        },
        Case {
            name: "neither spelling matches the current style: lexically greatest",
            current: "V1.2.3",
            tags: &["1.2.4", "v1.2.4"],
            expect: Expect::Update("v1.2.4"),
            ..CASE
        },
        Case {
            name: "the same version under another spelling is not newer",
            current: "1.2.3",
            policy: "major",
            tags: &["v1.2.3", "V1.2.3"],
            expect: Expect::UpToDate,
            ..CASE
        },
    ]);
}

#[test]
fn build_metadata() {
    check(&[
        Case {
            name: "1.2.3 with only 1.2.3+build.5 newer-looking: no update",
            current: "1.2.3",
            policy: "major",
            tags: &["1.2.3", "1.2.3+build.5"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "build metadata on the current tag does not make it older",
            current: "1.2.3+build.9",
            policy: "major",
            tags: &["1.2.3", "1.2.3+build.10"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "differing only by build: the one without build metadata",
            current: "1.2.3",
            tags: &["1.2.4+build.1", "1.2.4", "1.2.4+build.9"],
            expect: Expect::Update("1.2.4"),
            ..CASE
        },
        Case {
            name: "only builds: the lexically greatest",
            current: "1.2.3",
            tags: &["1.2.4+build.10", "1.2.4+build.5"],
            expect: Expect::Update("1.2.4+build.5"),
            ..CASE
        },
        Case {
            name: "a newer version with build metadata is still newer",
            current: "1.2.3",
            tags: &["1.2.3+build.7", "1.2.4+build.1"],
            expect: Expect::Update("1.2.4+build.1"),
            ..CASE
        },
    ]);
}

#[test]
fn prereleases() {
    check(&[
        Case {
            name: "GA with 1.3.0-rc.1 present: no move",
            current: "1.2.3",
            tags: &["1.2.3", "1.3.0-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "GA moves to a listed channel",
            current: "1.2.3",
            channels: "rc",
            tags: &["1.3.0-rc.1", "1.3.0-beta.4"],
            expect: Expect::Update("1.3.0-rc.1"),
            ..CASE
        },
        Case {
            name: "GA with * moves to any channel",
            current: "1.2.3",
            channels: "*",
            tags: &["1.3.0-beta.1", "1.3.0-alpha.7"],
            expect: Expect::Update("1.3.0-beta.1"),
            ..CASE
        },
        Case {
            name: "listing beta does not allow rc",
            current: "1.2.3",
            channels: "beta",
            tags: &["1.3.0-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "1.3.0-rc.9 -> 1.3.0-rc.10",
            current: "1.3.0-rc.9",
            policy: "patch",
            tags: &["1.3.0-rc.2", "1.3.0-rc.9", "1.3.0-rc.10"],
            expect: Expect::Update("1.3.0-rc.10"),
            ..CASE
        },
        Case {
            name: "1.3.0-rc.2 -> 1.3.0 when GA exists",
            current: "1.3.0-rc.2",
            policy: "patch",
            tags: &["1.3.0-rc.1", "1.3.0-rc.3", "1.3.0"],
            expect: Expect::Update("1.3.0"),
            ..CASE
        },
        Case {
            name: "a prerelease moves to a newer GA inside the policy",
            current: "1.3.0-rc.2",
            tags: &["1.4.0", "2.0.0"],
            expect: Expect::Update("1.4.0"),
            ..CASE
        },
        Case {
            name: "1.3.0-beta.1 does not move to 1.3.0-rc.1 unless rc is listed",
            current: "1.3.0-beta.1",
            tags: &["1.3.0-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "1.3.0-beta.1 -> 1.3.0-rc.1 with rc listed",
            current: "1.3.0-beta.1",
            channels: "rc",
            tags: &["1.3.0-rc.1"],
            expect: Expect::Update("1.3.0-rc.1"),
            ..CASE
        },
        Case {
            name: "a prerelease stays in its channel when another is newer",
            current: "1.3.0-beta.1",
            tags: &["1.3.0-beta.2", "1.3.0-rc.1"],
            expect: Expect::Update("1.3.0-beta.2"),
            ..CASE
        },
        Case {
            name: "a prerelease follows its channel across versions",
            current: "1.3.0-rc.2",
            tags: &["1.3.0", "1.4.0-rc.1"],
            expect: Expect::Update("1.4.0-rc.1"),
            ..CASE
        },
        Case {
            name: "a bare prerelease identifier is a channel too",
            current: "1.3.0-rc",
            policy: "patch",
            tags: &["1.3.0-rc.1", "1.3.0-rcx.1"],
            expect: Expect::Update("1.3.0-rc.1"),
            ..CASE
        },
    ]);
}

#[test]
fn aliases_and_tracking() {
    check(&[
        Case {
            name: "alias 1 with 1.9.0, 1.10.1, 2.0.0 -> 1.10.1, tracking 1",
            current: "1",
            tags: &["1.9.0", "1.10.1", "2.0.0", "1"],
            expect: Expect::UpdateTracking("1.10.1", "1"),
            ..CASE
        },
        Case {
            name: "an alias bounds the choice whatever the policy (major)",
            current: "1",
            policy: "major",
            tags: &["1.9.0", "2.0.0"],
            expect: Expect::UpdateTracking("1.9.0", "1"),
            ..CASE
        },
        Case {
            name: "an alias is the intent even under patch: newest 1.x.y",
            current: "1",
            policy: "patch",
            tags: &["1.2.9", "1.3.0"],
            expect: Expect::UpdateTracking("1.3.0", "1"),
            ..CASE
        },
        Case {
            name: "alias v1.2 with prefixed and unprefixed tags",
            current: "v1.2",
            tags: &["v1.2.3", "1.2.5", "v1.3.0", "1.2.4", "v1.2"],
            expect: Expect::UpdateTracking("1.2.5", "1.2"),
            ..CASE
        },
        Case {
            name: "alias v1.2: same version twice, the alias's style wins",
            current: "v1.2",
            tags: &["1.2.5", "v1.2.5"],
            expect: Expect::UpdateTracking("v1.2.5", "1.2"),
            ..CASE
        },
        Case {
            name: "an alias resolves to GA only",
            current: "1",
            tags: &["1.4.0", "1.5.0-rc.1"],
            expect: Expect::UpdateTracking("1.4.0", "1"),
            ..CASE
        },
        Case {
            name: "an alias with a listed channel may resolve to a prerelease",
            current: "1",
            channels: "rc",
            tags: &["1.4.0", "1.5.0-rc.1"],
            expect: Expect::UpdateTracking("1.5.0-rc.1", "1"),
            ..CASE
        },
        Case {
            name: "an alias that matches no version: skip",
            current: "3",
            tags: &["1.0.0", "2.0.0", "3"],
            expect: Expect::Skip("alias-unmatched"),
            ..CASE
        },
        Case {
            name: "an alias whose versions are all excluded: skip",
            current: "2",
            tags: &["2.0.0-rc.1"],
            expect: Expect::Skip("alias-unmatched"),
            ..CASE
        },
        Case {
            name: "rollback: app:2.0.0 set by hand to app:1 -> newest 1.x.y",
            current: "1",
            policy: "major",
            track: Some("2"),
            tags: &["1.9.0", "2.0.0", "2.1.0"],
            expect: Expect::UpdateTracking("1.9.0", "1"),
            ..CASE
        },
        Case {
            name: "a remembered track keeps major inside 1",
            current: "1.9.0",
            policy: "major",
            track: Some("1"),
            tags: &["1.10.0", "2.0.0"],
            expect: Expect::UpdateTracking("1.10.0", "1"),
            ..CASE
        },
        Case {
            name: "a remembered track 1.2 keeps major inside 1.2",
            current: "1.2.3",
            policy: "major",
            track: Some("1.2"),
            tags: &["1.2.9", "1.3.0"],
            expect: Expect::UpdateTracking("1.2.9", "1.2"),
            ..CASE
        },
        Case {
            name: "a track does not widen the policy",
            current: "1.2.3",
            policy: "patch",
            track: Some("1"),
            tags: &["1.2.4", "1.3.0"],
            expect: Expect::UpdateTracking("1.2.4", "1"),
            ..CASE
        },
        Case {
            name: "up to date inside the track: the track is kept",
            current: "1.10.1",
            policy: "major",
            track: Some("1"),
            tags: &["1.10.1", "2.0.0"],
            expect: Expect::UpToDateTracking("1"),
            ..CASE
        },
        Case {
            name: "a stale track (version set by hand outside it) is dropped",
            current: "2.0.0",
            policy: "major",
            track: Some("1"),
            tags: &["2.1.0", "3.0.0"],
            expect: Expect::Update("3.0.0"),
            ..CASE
        },
        Case {
            name: "the match filter applies to aliases",
            current: "1",
            filter: Some("^v"),
            tags: &["1.2.0", "v1.1.0"],
            expect: Expect::UpdateTracking("v1.1.0", "1"),
            ..CASE
        },
    ]);
}

#[test]
fn filters_and_rejections() {
    check(&[
        Case {
            name: "a tag filtered out by the match regex is never chosen",
            current: "1.2.3",
            policy: "major",
            filter: Some(r"^1\.2\."),
            tags: &["1.2.4", "1.3.0", "2.0.0"],
            expect: Expect::Update("1.2.4"),
            ..CASE
        },
        Case {
            name: "a filter that excludes everything",
            current: "1.2.3",
            filter: Some("^nothing$"),
            tags: &["1.2.4"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "a rejected version is skipped",
            current: "1.2.3",
            policy: "patch",
            rejected: &["1.2.5"],
            tags: &["1.2.4", "1.2.5"],
            expect: Expect::Update("1.2.4"),
            ..CASE
        },
        Case {
            name: "a newer version than the rejected one is still chosen",
            current: "1.2.3",
            policy: "patch",
            rejected: &["1.2.5"],
            tags: &["1.2.5", "1.2.6"],
            expect: Expect::Update("1.2.6"),
            ..CASE
        },
        Case {
            name: "rejecting a version rejects its other spellings",
            current: "v1.2.3",
            policy: "patch",
            rejected: &["v1.2.5"],
            tags: &["1.2.5", "1.2.5+build.1", "v1.2.4"],
            expect: Expect::Update("v1.2.4"),
            ..CASE
        },
        Case {
            name: "an alias skips rejected versions",
            current: "1",
            rejected: &["1.3.0"],
            tags: &["1.2.0", "1.3.0"],
            expect: Expect::UpdateTracking("1.2.0", "1"),
            ..CASE
        },
    ]);
}

#[test]
fn glob_and_regex_policies() {
    check(&[
        Case {
            name: "glob: natural order, build-10 > build-9",
            current: "build-9",
            policy: "glob:build-*",
            tags: &["build-10", "build-8", "build-9", "other-99"],
            expect: Expect::Update("build-10"),
            ..CASE
        },
        Case {
            name: "glob never picks a lower tag",
            current: "build-20",
            policy: "glob:build-*",
            tags: &["build-10", "build-9", "build-20"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "glob orders versions by semver",
            current: "v1.2.3",
            policy: "glob:v1.*",
            tags: &["v1.10.0", "v1.9.0", "v2.0.0"],
            expect: Expect::Update("v1.10.0"),
            ..CASE
        },
        Case {
            name: "glob: prerelease rules still apply to versions",
            current: "v1.2.3",
            policy: "glob:v1.*",
            tags: &["v1.3.0-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "glob: text with no numbers orders as text",
            current: "release-alpha",
            policy: "glob:release-*",
            tags: &["release-aaa", "release-beta"],
            expect: Expect::Update("release-beta"),
            ..CASE
        },
        Case {
            name: "glob: dates order numerically field by field",
            current: "2024.01.15",
            policy: "glob:20*",
            tags: &["2024.01.09", "2024.02.01", "2023.12.31"],
            expect: Expect::Update("2024.02.01"),
            ..CASE
        },
        Case {
            name: "glob: dates that happen to be semver order among the others",
            current: "2024.09.30",
            policy: "glob:20*",
            tags: &["2024.10.15", "2024.11.05", "2024.9.1"],
            expect: Expect::Update("2024.11.05"),
            ..CASE
        },
        Case {
            name: "glob: equal numbers with leading zeros are not newer",
            current: "build-1",
            policy: "glob:build-*",
            tags: &["build-01", "build-001"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "regex: only matching tags, natural order",
            current: "build-9",
            policy: r"regex:^build-\d+$",
            tags: &["build-10", "build-100-rc", "build-11x", "build-9"],
            expect: Expect::Update("build-10"),
            ..CASE
        },
        Case {
            name: "regex: plain numbers are build numbers, not aliases",
            current: "7",
            policy: r"regex:^\d+$",
            tags: &["8", "10", "9", "latest"],
            expect: Expect::Update("10"),
            ..CASE
        },
        Case {
            name: "regex: the version group orders the tags",
            current: "app-1.9.0",
            policy: "regex:^app-(?P<version>.+)$",
            tags: &["app-1.10.0", "app-1.9.1", "web-2.0.0", "app-1.10.0-rc.1"],
            expect: Expect::Update("app-1.10.0"),
            ..CASE
        },
        Case {
            name: "regex: version-group prereleases follow the channel rules",
            current: "app-1.9.0",
            policy: "regex:^app-(?P<version>.+)$",
            tags: &["app-1.10.0-rc.1"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "regex: a non-version group orders naturally",
            current: "app-build9",
            policy: "regex:^app-(?P<version>.+)$",
            tags: &["app-build10", "app-build8"],
            expect: Expect::Update("app-build10"),
            ..CASE
        },
        Case {
            name: "glob: a version and other text compare as text",
            current: "latest",
            policy: "glob:*",
            tags: &["latest", "zzz", "0.1.0"],
            expect: Expect::Update("zzz"),
            ..CASE
        },
        Case {
            name: "glob: the match filter applies too",
            current: "build-9",
            policy: "glob:build-*",
            filter: Some("0$"),
            tags: &["build-10", "build-11"],
            expect: Expect::Update("build-10"),
            ..CASE
        },
        Case {
            name: "glob: rejected tags",
            current: "build-9",
            policy: "glob:build-*",
            rejected: &["build-11"],
            tags: &["build-10", "build-11"],
            expect: Expect::Update("build-10"),
            ..CASE
        },
        Case {
            name: "glob: a track is not applied and not returned",
            current: "v1.2.3",
            policy: "glob:v*",
            track: Some("1"),
            tags: &["v2.0.0"],
            expect: Expect::Update("v2.0.0"),
            ..CASE
        },
    ]);
}

#[test]
fn bad_input_is_a_skip() {
    check(&[
        Case {
            name: "latest under minor",
            current: "latest",
            tags: &["latest", "1.0.0"],
            expect: Expect::Skip("current-not-a-version"),
            ..CASE
        },
        Case {
            name: "a leading-zero current tag",
            current: "01.2.3",
            tags: &["1.2.4"],
            expect: Expect::Skip("current-not-a-version"),
            ..CASE
        },
        Case {
            name: "no tag at all",
            current: "",
            tags: &["1.0.0"],
            expect: Expect::Skip("missing-tag"),
            ..CASE
        },
        Case {
            name: "policy off",
            current: "1.0.0",
            policy: "off",
            tags: &["2.0.0"],
            expect: Expect::Skip("policy-off"),
            ..CASE
        },
        Case {
            name: "digest: the tag stays",
            current: "latest",
            policy: "digest",
            tags: &["latest", "2.0.0"],
            expect: Expect::UpToDate,
            ..CASE
        },
        Case {
            name: "digest: a tag missing from the registry",
            current: "latest",
            policy: "digest",
            tags: &["2.0.0"],
            expect: Expect::Skip("tag-not-in-registry"),
            ..CASE
        },
    ]);
}

#[test]
fn skip_reasons_say_what_to_do() {
    let policy = Policy::Minor;
    let skip = |current: &str, tags: &[&str], channels: &Channels| match resolve(
        &Request::new(current, &policy).channels(channels),
        tags,
    ) {
        Decision::Skip { reason } => reason,
        other => panic!("expected a skip, got {other:?}"),
    };
    let reason = skip("latest", &[], &Channels::None);
    assert!(reason.to_string().contains("`latest`"), "{reason}");
    assert!(reason.to_string().contains("`minor`"), "{reason}");

    let reason = skip("v3", &["1.0.0"], &Channels::None);
    assert_eq!(
        reason,
        SkipReason::AliasUnmatched {
            alias: "v3".into(),
            excluded: 0
        }
    );
    assert!(reason.to_string().contains("push one"), "{reason}");

    let reason = skip(
        "2",
        &["2.0.0-rc.1", "2.0.0-rc.1", "2.1.0-beta.1"],
        &Channels::None,
    );
    assert_eq!(
        reason,
        SkipReason::AliasUnmatched {
            alias: "2".into(),
            excluded: 2
        }
    );
    assert!(
        reason.to_string().contains("tagwatch.dev/prerelease"),
        "{reason}"
    );
}

#[test]
fn unparsable_annotations_become_skips() {
    // The caller parses annotations; every parse error converts into a Skip reason.
    let skip = |reason: SkipReason| Decision::Skip { reason };
    let policy = "regex:(".parse::<Policy>().map_err(SkipReason::from);
    assert!(
        matches!(policy.map_err(skip), Err(Decision::Skip { reason }) if reason.kind() == "invalid-policy")
    );
    let policy = "newest".parse::<Policy>().map_err(SkipReason::from);
    assert!(
        matches!(policy, Err(SkipReason::InvalidPolicy { message }) if message.contains("`newest`"))
    );
    let filter = parse_filter("v1[").map_err(SkipReason::from);
    assert!(matches!(filter, Err(SkipReason::InvalidFilter { .. })));
}

#[test]
fn explanation_shows_why_each_tag_was_or_was_not_chosen() {
    let policy = Policy::Minor;
    let filter = parse_filter(r"^\d").unwrap();
    let rejected: BTreeSet<String> = ["1.10.1".to_owned()].into();
    let request = Request::new("1.9.3", &policy)
        .filter(Some(&filter))
        .rejected(&rejected)
        .explain(true);
    let tags = [
        "1.9.3",
        "1.10.0",
        "latest",
        "1.9.4",
        "2.0.0",
        "1.11.0-rc.1",
        "1.8.0",
        "1.10.1",
        "v1.12.0",
        "1.2",
        "1.10.0",
    ];
    let decision = resolve(&request, &tags);
    let shown: Vec<(&str, &str)> = decision
        .explanation()
        .iter()
        .map(|candidate| (candidate.tag.as_str(), candidate.verdict.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("2.0.0", "outside-policy"),
            ("v1.12.0", "filtered"),
            ("1.11.0-rc.1", "prerelease-channel"),
            ("1.10.1", "rejected"),
            ("1.10.0", "chosen"),
            ("1.9.4", "superseded"),
            ("1.9.3", "not-newer"),
            ("1.8.0", "not-newer"),
            ("1.2", "not-a-version"),
            ("latest", "filtered"),
        ]
    );
    assert_eq!(decision.tag(), Some("1.10.0"));

    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["decision"], "update");
    assert_eq!(json["tag"], "1.10.0");
    assert_eq!(json["track"], serde_json::Value::Null);
    assert_eq!(json["explanation"][4]["verdict"], "chosen");
}

#[test]
fn explanation_names_the_alias_and_same_version_spellings() {
    let policy = Policy::Major;
    let request = Request::new("v1.9.3", &policy)
        .track(Some("1".parse().unwrap()))
        .explain(true);
    let decision = resolve(&request, &["2.0.0", "1.10.0", "v1.10.0", "v1.9.3"]);
    let shown: Vec<(&str, Verdict)> = decision
        .explanation()
        .iter()
        .map(|candidate| (candidate.tag.as_str(), candidate.verdict))
        .collect();
    assert_eq!(
        shown,
        [
            ("2.0.0", Verdict::OutsideAlias),
            ("v1.10.0", Verdict::Chosen),
            ("1.10.0", Verdict::Superseded),
            ("v1.9.3", Verdict::NotNewer),
        ]
    );
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["track"], "1");
}

#[test]
fn explanation_is_empty_unless_asked() {
    let policy = Policy::Minor;
    let decision = resolve(&Request::new("1.0.0", &policy), &["1.1.0", "latest"]);
    assert!(decision.explanation().is_empty());
    let json = serde_json::to_value(&decision).unwrap();
    assert!(json.get("explanation").is_none(), "{json}");

    let decision = resolve(
        &Request::new("1.0.0", &Policy::Digest).explain(true),
        &["1.0.0", "1.1.0"],
    );
    let verdicts: Vec<Verdict> = decision.explanation().iter().map(|c| c.verdict).collect();
    assert_eq!(verdicts, [Verdict::NotNewer, Verdict::OutsidePolicy]);
}

#[test]
fn skip_serializes_its_reason() {
    let policy = Policy::Off;
    let json = serde_json::to_value(resolve(&Request::new("1.0.0", &policy), &["2.0.0"])).unwrap();
    assert_eq!(json["decision"], "skip");
    assert_eq!(json["reason"]["kind"], "policy-off");
    assert!(json["reason"]["message"].as_str().unwrap().contains("off"));
}
