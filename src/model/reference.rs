//! The distribution reference grammar (`name[:tag][@digest]`, docker/distribution's
//! `reference` package), checked by hand rather than by oci-spec's `Reference` parser: that one
//! compiles a Unicode regular expression whose counted repetition costs 5.4 MB held for the
//! life of the process and 16 MB at its first use, a quarter of tagwatch's memory budget at
//! ten thousand workloads. The grammar is the same (with Go's ASCII `\w` in tags, as the
//! reference implementation has it); a property test checks it against oci-spec's on every
//! ASCII input.

/// `docker.io` as references name it.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// A repository path longer than this is refused (`NAME_TOTAL_LENGTH_MAX`).
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A reference taken apart: the registry and repository normalised the way Docker pulls them
/// (`nginx` → `docker.io` + `library/nginx`), the tag and digest as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The name as written, without tag and digest.
    pub name: &'a str,
    pub registry: String,
    pub repository: String,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Why a reference does not parse, in the words of the reference implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("repository name must be lowercase")]
    Uppercase,
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    #[error("invalid checksum digest format")]
    DigestFormat,
    #[error("invalid checksum digest length")]
    DigestLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

pub fn parse(text: &str) -> Result<Parsed<'_>, ParseError> {
    if text.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    // A ':' after the last '/' starts the tag; one before it is a registry's port.
    let segment = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[segment..].find(':') {
        Some(i) => (&rest[..segment + i], Some(&rest[segment + i + 1..])),
        None => (rest, None),
    };
    if !valid_name(name) || !tag.is_none_or(valid_tag) || !digest.is_none_or(valid_digest) {
        return Err(if uppercase_path(name) {
            ParseError::Uppercase
        } else {
            ParseError::InvalidFormat
        });
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or(ParseError::DigestFormat)?;
        let wanted = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() != wanted {
            return Err(ParseError::DigestLength);
        }
    }
    Ok(Parsed {
        name,
        registry,
        repository,
        tag,
        digest,
    })
}

/// `[domain/]component(/component)*`, where the first segment counts as a domain only if the
/// rest is a path on its own.
fn valid_name(name: &str) -> bool {
    if name.split('/').all(path_component) {
        return true;
    }
    match name.split_once('/') {
        Some((domain, path)) => valid_domain(domain) && path.split('/').all(path_component),
        None => false,
    }
}

/// `[a-z0-9]+` runs joined by one separator each: `.`, `_`, `__` or any number of `-`.
fn path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `label(.label)*[:port]`, each label alphanumeric with inner dashes.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(e)) => {
                f.is_ascii_alphanumeric()
                    && e.is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
            _ => false,
        }
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[\w][\w.-]{0,127}` with ASCII word characters.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(|b| word(*b))
        && bytes.len() <= TAG_MAX
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-')
}

/// `algorithm:hex`, the algorithm `[A-Za-z][A-Za-z0-9]*` parts joined by `-_+.`, at least 32 hex.
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let part = |p: &str| {
        let b = p.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(part)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the only fault of `name` is upper case in its path, to say so.
fn uppercase_path(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.bytes().any(|b| b.is_ascii_uppercase()) && valid_name(&lower) && {
        let (_, path) = split_domain(name);
        path.bytes().any(|b| b.is_ascii_uppercase())
    }
}

/// Docker's rule: the first segment is a registry only if it looks like a host (a dot, a port,
/// or `localhost`); Docker Hub's official images live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("library/{path}");
    }
    (domain, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_table_of_references() {
        let ok = [
            ("nginx", "docker.io", "library/nginx", None),
            ("nginx:1.25", "docker.io", "library/nginx", Some("1.25")),
            (
                "index.docker.io/org/app:v1",
                "docker.io",
                "org/app",
                Some("v1"),
            ),
            ("localhost/app:1", "localhost", "app", Some("1")),
            (
                "127.0.0.1:5000/team/app:1.2.3",
                "127.0.0.1:5000",
                "team/app",
                Some("1.2.3"),
            ),
            (
                "ghcr.io/org/a__b/c-d--e.f:1_X-y.z",
                "ghcr.io",
                "org/a__b/c-d--e.f",
                Some("1_X-y.z"),
            ),
            (
                "Registry.Example:443/app",
                "Registry.Example:443",
                "app",
                None,
            ),
        ];
        for (text, registry, repository, tag) in ok {
            let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.registry, registry, "{text}");
            assert_eq!(parsed.repository, repository, "{text}");
            assert_eq!(parsed.tag, tag, "{text}");
        }
        let digested = format!("app:1@{DIGEST}");
        assert_eq!(parse(&digested).unwrap().digest, Some(DIGEST));

        let bad = [
            ("", ParseError::NameEmpty),
            ("App", ParseError::Uppercase),
            ("ghcr.io/Org/app", ParseError::Uppercase),
            ("app:", ParseError::InvalidFormat),
            ("app:.1", ParseError::InvalidFormat),
            ("a..b", ParseError::InvalidFormat),
            ("a_.b", ParseError::InvalidFormat),
            ("a___b", ParseError::InvalidFormat),
            ("-a", ParseError::InvalidFormat),
            ("host:port/app", ParseError::InvalidFormat),
            ("app@sha256:abc", ParseError::InvalidFormat),
            ("app:1:2", ParseError::InvalidFormat),
            ("app:ü", ParseError::InvalidFormat),
            (
                "app@md5:0123456789abcdef0123456789abcdef",
                ParseError::DigestUnsupported,
            ),
            (
                "app@sha256:0123456789abcdef0123456789abcdef",
                ParseError::DigestLength,
            ),
        ];
        for (text, error) in bad {
            assert_eq!(parse(text), Err(error), "{text:?}");
        }
        let long = format!("{}:1", "a".repeat(NAME_MAX + 1));
        assert_eq!(parse(&long), Err(ParseError::NameTooLong));
        let long_tag = format!("app:{}", "1".repeat(TAG_MAX + 1));
        assert_eq!(parse(&long_tag), Err(ParseError::InvalidFormat));
    }

    /// oci-spec's parser is the oracle (it is what this replaces): the same verdict, and the
    /// same parts, on inputs built from the grammar's own characters.
    fn agrees_with_oci_spec(text: &str) {
        let ours = parse(text);
        let theirs = oci_client::Reference::try_from(text);
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert_eq!(ours.registry, theirs.registry(), "{text:?}");
                assert_eq!(ours.repository, theirs.repository(), "{text:?}");
                assert_eq!(ours.digest, theirs.digest(), "{text:?}");
                if ours.tag.is_some() || ours.digest.is_some() {
                    assert_eq!(ours.tag, theirs.tag(), "{text:?}");
                }
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{text:?}: ours {ours:?}, oci-spec's {theirs:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn the_same_verdict_as_oci_spec_on_near_misses(
            text in "[a-zA-Z0-9._:/@-]{0,24}"
        ) {
            agrees_with_oci_spec(&text);
        }

        #[test]
        fn the_same_verdict_as_oci_spec_on_shaped_references(
            domain in proptest::option::of("[a-zA-Z0-9.-]{1,12}(:[0-9]{1,5})?"),
            path in "[a-z0-9._-]{1,10}(/[a-z0-9._-]{1,10}){0,2}",
            tag in proptest::option::of("[a-zA-Z0-9_.-]{0,12}"),
            digest in proptest::option::of("(sha256|sha512|md5|sha256+x):[0-9a-f]{30,70}"),
        ) {
            let mut text = String::new();
            if let Some(domain) = domain {
                text.push_str(&domain);
                text.push('/');
            }
            text.push_str(&path);
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(digest) = digest {
                text.push('@');
                text.push_str(&digest);
            }
            agrees_with_oci_spec(&text);
        }
    }
}
