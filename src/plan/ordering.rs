//! How candidate tags are ordered: by semver precedence when they are versions, else naturally
//! (`build-10 > build-9`), and with a deterministic tie-break so the choice never depends on the
//! order the registry listed the tags in.

use std::cmp::Ordering;

use semver::Version;

use crate::model::tag::{parse_version, Prefix};

/// What a tag is ordered by.
///
/// Versions compare with each other by semver precedence. Anything else compares by
/// [`natural_cmp`], and a version compared with a non-version contributes its `MAJOR.MINOR.PATCH`
/// text (ranking above a non-version whose text compares equal, like `01.2.3`). That keeps date
/// tags in order when some of them happen to be valid semver (`2024.10.15` is, `2024.09.30` is not)
/// and is still a total order: it is the lexicographic product of the natural order of the core
/// text and the prerelease precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key<'t> {
    Natural(&'t str),
    Version {
        version: Version,
        prefix: Prefix,
        /// `MAJOR.MINOR.PATCH` as written; `semver` accepts no leading zeros, so it is canonical.
        core: &'t str,
    },
}

impl<'t> Key<'t> {
    /// A version key when `text` is a version, else a natural one.
    pub(crate) fn of(text: &'t str) -> Key<'t> {
        match parse_version(text) {
            Some((prefix, version)) => Key::version(text, prefix, version),
            None => Key::Natural(text),
        }
    }

    /// A version key for `text`, already parsed by [`parse_version`].
    pub(crate) fn version(text: &'t str, prefix: Prefix, version: Version) -> Key<'t> {
        let unprefixed = &text[prefix.as_str().len()..];
        let core_end = unprefixed.find(['-', '+']).unwrap_or(unprefixed.len());
        Key::Version {
            version,
            prefix,
            core: &unprefixed[..core_end],
        }
    }

    pub(crate) fn as_version(&self) -> Option<&Version> {
        match self {
            Key::Version { version, .. } => Some(version),
            Key::Natural(_) => None,
        }
    }

    /// Newer or older; `Equal` for the same version spelled differently (`v1.2.3`, `1.2.3+b`).
    pub(crate) fn cmp_precedence(&self, other: &Key<'_>) -> Ordering {
        match (self, other) {
            (Key::Version { version: a, .. }, Key::Version { version: b, .. }) => {
                a.cmp_precedence(b)
            }
            (Key::Natural(a), Key::Natural(b)) => natural_cmp(a, b),
            (Key::Version { core, .. }, Key::Natural(text)) => {
                natural_cmp(core, text).then(Ordering::Greater)
            }
            (Key::Natural(text), Key::Version { core, .. }) => {
                natural_cmp(text, core).then(Ordering::Less)
            }
        }
    }
}

/// A total order over candidates: precedence first; among equal versions, the prefix style of the
/// current tag (`v1.2.4` over `1.2.4` when running `v1.2.3`), then no build metadata over some,
/// then the lexically greatest tag. The last step makes the order total, so the choice is a
/// function of the set of tags.
pub(crate) fn cmp_candidates(
    (a_tag, a_key): (&str, &Key<'_>),
    (b_tag, b_key): (&str, &Key<'_>),
    preferred: Prefix,
) -> Ordering {
    let same_style =
        |key: &Key<'_>| matches!(key, Key::Version { prefix, .. } if *prefix == preferred);
    let without_build = |key: &Key<'_>| {
        key.as_version()
            .is_none_or(|version| version.build.is_empty())
    };
    a_key
        .cmp_precedence(b_key)
        .then_with(|| same_style(a_key).cmp(&same_style(b_key)))
        .then_with(|| without_build(a_key).cmp(&without_build(b_key)))
        .then_with(|| a_tag.cmp(b_tag))
}

/// Natural order: runs of ASCII digits compare as numbers (any length, leading zeros ignored),
/// everything else byte by byte. `build-9 < build-10`, `a < b`, `build-01 == build-1`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (a_digits, a_rest) = split_digits(a);
                let (b_digits, b_rest) = split_digits(b);
                let (a_number, b_number) = (trim_zeros(a_digits), trim_zeros(b_digits));
                let order = a_number
                    .len()
                    .cmp(&b_number.len())
                    .then_with(|| a_number.cmp(b_number));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (a_rest, b_rest);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    bytes.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn natural_order_table() {
        use Ordering::*;
        let cases = [
            ("build-10", "build-9", Greater),
            ("build-9", "build-10", Less),
            ("build-01", "build-1", Equal),
            ("a", "b", Less),
            ("a1b2", "a1b10", Less),
            ("2024.01.15", "2024.1.9", Greater),
            ("1", "1a", Less),
            (
                "x99999999999999999999999",
                "x100000000000000000000000",
                Less,
            ),
            ("", "", Equal),
            ("", "0", Less),
            ("rc", "rc1", Less),
        ];
        for (a, b, expected) in cases {
            assert_eq!(natural_cmp(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn versions_and_text_share_one_order() {
        let ordered = |a: &str, b: &str| Key::of(a).cmp_precedence(&Key::of(b));
        assert_eq!(ordered("0.0.1", "zzz"), Ordering::Less);
        assert_eq!(ordered("2024.10.15", "2024.09.30"), Ordering::Greater);
        assert_eq!(ordered("2024.10.15", "2024.11.05"), Ordering::Less);
        assert_eq!(ordered("v1.2.3-rc.1", "01.2.3"), Ordering::Greater);
        assert_eq!(ordered("1.2.3", "1.2.3.1"), Ordering::Less);
        assert_eq!(ordered("1.2.3+b.5", "v1.2.3"), Ordering::Equal);
        assert_eq!(ordered("1.2.10", "1.2.9"), Ordering::Greater);
        assert_eq!(ordered("1.3.0-rc.1", "1.3.0"), Ordering::Less);
    }

    #[test]
    fn tie_break_prefers_style_then_no_build_then_lexical() {
        fn pick<'a>(tags: &[&'a str], preferred: Prefix) -> &'a str {
            let keyed: Vec<(&str, Key)> = tags.iter().map(|t| (*t, Key::of(t))).collect();
            keyed
                .iter()
                .max_by(|a, b| cmp_candidates((a.0, &a.1), (b.0, &b.1), preferred))
                .map(|(tag, _)| *tag)
                .unwrap()
        }
        let same = ["1.2.4", "v1.2.4", "1.2.4+b.1"];
        assert_eq!(pick(&same, Prefix::LowerV), "v1.2.4");
        assert_eq!(pick(&same, Prefix::None), "1.2.4");
        assert_eq!(
            pick(&["1.2.4+b.5", "1.2.4+b.10"], Prefix::None),
            "1.2.4+b.5"
        );
        assert_eq!(pick(&["V1.2.4", "1.2.4"], Prefix::LowerV), "V1.2.4");
    }

    fn chunky() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab0-9.-]{0,8}").unwrap()
    }

    fn tag_text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::string::string_regex(
                "v?[0-2]\\.[0-2]\\.[0-2](-(rc|beta|a)(\\.[0-9])?)?(\\+b[0-9])?"
            )
            .unwrap(),
            proptest::string::string_regex("[v0-2.a-]{0,7}").unwrap(),
        ]
    }

    proptest! {
        #[test]
        fn key_order_is_a_total_preorder(a in tag_text(), b in tag_text(), c in tag_text()) {
            let (a, b, c) = (Key::of(&a), Key::of(&b), Key::of(&c));
            prop_assert_eq!(a.cmp_precedence(&b), b.cmp_precedence(&a).reverse());
            if a.cmp_precedence(&b).is_le() && b.cmp_precedence(&c).is_le() {
                prop_assert!(a.cmp_precedence(&c).is_le(), "{:?} {:?} {:?}", a, b, c);
            }
        }

        #[test]
        fn natural_order_is_a_total_preorder(a in chunky(), b in chunky(), c in chunky()) {
            prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
            if natural_cmp(&a, &b) != Ordering::Greater && natural_cmp(&b, &c) != Ordering::Greater {
                prop_assert_ne!(natural_cmp(&a, &c), Ordering::Greater);
            }
        }
    }
}
