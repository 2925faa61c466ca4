//! Where registry requests may go. Image references name any host a tenant likes and registries
//! answer whatever they like, so every outbound target is checked here: the configured
//! allow-list, link-local addresses (cloud metadata endpoints), the token realm's scheme, and
//! that `Link` pages and redirects stay on the registry's own origin.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Registry hosts tagwatch may contact: globs over `host[:port]` as written in image references,
/// `*` standing for any run of characters (`*.example.com`, `ghcr.io`, `registry.internal:5000`).
/// A pattern without a port matches the host on any port. Matching ignores ASCII case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    patterns: Vec<String>,
}

impl AllowList {
    /// Checks every pattern; the error names the index of the first bad one.
    pub fn new<I, S>(patterns: I) -> Result<AllowList, (usize, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut checked = Vec::new();
        for (i, pattern) in patterns.into_iter().enumerate() {
            let pattern = pattern.as_ref().trim();
            check_pattern(pattern).map_err(|problem| (i, problem))?;
            checked.push(pattern.to_ascii_lowercase());
        }
        Ok(AllowList { patterns: checked })
    }

    /// Whether `host` (`host[:port]`, as in image references) matches one of the patterns.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let without_port = strip_port(&host);
        self.patterns.iter().any(|pattern| {
            if has_port(pattern) {
                glob_matches(pattern, &host)
            } else {
                glob_matches(pattern, without_port)
            }
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if pattern.contains("://") || pattern.contains('/') {
        return Err(format!(
            "`{pattern}` is not a host[:port] glob (no scheme, no path)"
        ));
    }
    if let Some(bad) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '[' | ']')))
    {
        return Err(format!(
            "`{pattern}`: `{bad}` is not allowed (host characters and `*` only)"
        ));
    }
    Ok(())
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; a bare IPv6 literal is left alone.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn has_port(pattern: &str) -> bool {
    strip_port(pattern).len() != pattern.len()
}

/// `*` matches any run of characters (dots included); everything else matches itself. Iterative,
/// so a hostile pattern or host cannot blow the stack or take exponential time.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// 169.254.0.0/16 and fe80::/10, also as an IPv4-mapped IPv6 address: where cloud metadata
/// endpoints (169.254.169.254) live.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// Whether the URL's host is a link-local IP literal (names are checked when they resolve).
pub fn url_is_link_local(url: &Url) -> bool {
    // The URL parser already turned every IPv4 spelling (`2852039166`, `0xa9.0xfe...`) into
    // dotted form and wraps IPv6 in brackets.
    url.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(is_link_local)
}

/// Same scheme, host and port, and no credentials in the URL: the only place a `Link` page or a
/// redirect may lead, so an `Authorization` header never travels to another host.
pub fn same_origin(from: &Url, to: &Url) -> bool {
    from.scheme() == to.scheme()
        && from.host_str().map(str::to_ascii_lowercase)
            == to.host_str().map(str::to_ascii_lowercase)
        && from.port_or_known_default() == to.port_or_known_default()
        && to.username().is_empty()
        && to.password().is_none()
}

/// The URL for messages: without any `user:password@` a registry put into it.
pub fn shown(url: &Url) -> String {
    let mut clean = url.clone();
    // Both fail only for URLs that cannot hold credentials at all (`data:`, `mailto:`).
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.to_string()
}

/// A token realm gets the registry credentials: `https`, or `http` only to a host configured as
/// insecure (`insecure_hosts` holds lowercase `host[:port]`; the realm's port may differ, since
/// token servers usually listen on their own port), never a link-local literal.
pub fn check_realm(
    realm: &Url,
    insecure_hosts: &HashSet<String>,
    allow_link_local: bool,
) -> Result<(), String> {
    if !realm.username().is_empty() || realm.password().is_some() {
        return Err("the token realm carries credentials in its URL".into());
    }
    let Some(host) = realm.host_str().map(str::to_ascii_lowercase) else {
        return Err("the token realm has no host".into());
    };
    match realm.scheme() {
        "https" => {}
        "http" => {
            let insecure = insecure_hosts
                .iter()
                .any(|entry| entry == &host || strip_port(entry) == host);
            if !insecure {
                return Err(format!(
                    "the token realm is plain http on {host}, which is not a registry configured as insecure"
                ));
            }
        }
        other => return Err(format!("the token realm's scheme `{other}` is not https")),
    }
    if !allow_link_local && url_is_link_local(realm) {
        return Err(format!(
            "the token realm {host} is a link-local address (allowLinkLocal is off)"
        ));
    }
    Ok(())
}

/// The error our resolver gives for a name whose every address is link-local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLocalRefused {
    pub name: String,
}

impl fmt::Display for LinkLocalRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves only to link-local addresses (allowLinkLocal is off)",
            self.name
        )
    }
}

impl std::error::Error for LinkLocalRefused {}

type LookupFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
/// Name → addresses; the system resolver in production, a table in tests.
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// reqwest's DNS resolver for registry requests: the system resolver (or fixed entries), with
/// link-local answers dropped, so a name pointing at 169.254.169.254 is refused like the literal.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_link_local: bool,
    fixed: Arc<Vec<(String, IpAddr)>>,
    lookup: Lookup,
}

impl GuardedResolver {
    /// `fixed`: name → address entries answered before DNS (like /etc/hosts), same rules.
    pub fn new(allow_link_local: bool, fixed: Vec<(String, IpAddr)>) -> GuardedResolver {
        GuardedResolver::with_lookup(allow_link_local, fixed, Arc::new(system_lookup))
    }

    pub fn with_lookup(
        allow_link_local: bool,
        fixed: Vec<(String, IpAddr)>,
        lookup: Lookup,
    ) -> GuardedResolver {
        GuardedResolver {
            allow_link_local,
            fixed: Arc::new(
                fixed
                    .into_iter()
                    .map(|(name, ip)| (name.to_ascii_lowercase(), ip))
                    .collect(),
            ),
            lookup,
        }
    }

    /// The addresses requests to `name` may connect to.
    pub async fn addresses(
        &self,
        name: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let lower = name.to_ascii_lowercase();
        let fixed: Vec<IpAddr> = self
            .fixed
            .iter()
            .filter(|(n, _)| *n == lower)
            .map(|(_, ip)| *ip)
            .collect();
        let all = if fixed.is_empty() {
            (self.lookup)(name.to_string()).await?
        } else {
            fixed
        };
        if self.allow_link_local {
            return Ok(all);
        }
        let kept: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| !is_link_local(*ip))
            .collect();
        if kept.is_empty() && !all.is_empty() {
            return Err(Box::new(LinkLocalRefused {
                name: name.to_string(),
            }));
        }
        Ok(kept)
    }
}

fn system_lookup(name: String) -> LookupFuture {
    Box::pin(async move {
        let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    })
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolver.addresses(&name).await?;
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(patterns).unwrap()
    }

    #[test]
    fn allow_list_globs() {
        let allowed = list(&[
            "*.example.com",
            "ghcr.io",
            "registry.internal:5000",
            "127.0.0.1",
        ]);
        for host in [
            "a.example.com",
            "a.b.example.com",
            "A.Example.COM",
            "a.example.com:443",
            "ghcr.io",
            "ghcr.io:443",
            "registry.internal:5000",
            "127.0.0.1:5000",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "example.com",
            "evil.com",
            "example.com.evil.com",
            "ghcr.io.evil.com",
            "xghcr.io",
            "registry.internal",
            "registry.internal:5001",
            "169.254.169.254",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
        assert!(list(&["*"]).allows("anything.at.all:1"));
        assert!(
            !AllowList::default().allows("ghcr.io"),
            "an empty list allows nothing"
        );
    }

    #[test]
    fn glob_is_linear_on_hostile_input() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*b";
        let text = "a".repeat(5000);
        assert!(!glob_matches(pattern, &text));
        assert!(glob_matches("*.x*", "a.xb"));
    }

    #[test]
    fn bad_patterns_are_refused_with_their_index() {
        assert_eq!(AllowList::new(["ghcr.io", ""]).unwrap_err().0, 1);
        assert!(AllowList::new(["https://ghcr.io"])
            .unwrap_err()
            .1
            .contains("no scheme"));
        assert!(AllowList::new(["ghcr.io/org"]).is_err());
        assert!(AllowList::new(["gh cr.io"]).is_err());
    }

    #[test]
    fn link_local_addresses() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fec0::1",
            "2001:db8::1",
            "169.255.0.1",
        ] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for url in [
            "http://169.254.169.254/v2/",
            "http://[fe80::1]:5000/v2/",
            "http://2852039166/v2/",
            "http://0xa9.0xfe.0xa9.0xfe/",
        ] {
            assert!(url_is_link_local(&Url::parse(url).unwrap()), "{url}");
        }
        assert!(!url_is_link_local(
            &Url::parse("http://metadata.internal/").unwrap()
        ));
    }

    #[test]
    fn origins() {
        let base = Url::parse("https://r.io/v2/app/tags/list").unwrap();
        let same = Url::parse("https://R.io:443/v2/app/tags/list?last=a").unwrap();
        assert!(same_origin(&base, &same));
        for other in [
            "http://r.io/v2/app/tags/list",
            "https://r.io:444/v2/app/tags/list",
            "https://evil.io/v2/app/tags/list",
            "https://u:p@r.io/v2/app/tags/list",
        ] {
            assert!(!same_origin(&base, &Url::parse(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn shown_urls_drop_userinfo() {
        let url = Url::parse("https://user:SECRET@r.io/token?x=1").unwrap();
        assert_eq!(shown(&url), "https://r.io/token?x=1");
    }

    #[test]
    fn realms() {
        let insecure: HashSet<String> = ["127.0.0.1:5000".to_string()].into();
        let check = |realm: &str| check_realm(&Url::parse(realm).unwrap(), &insecure, false);
        assert!(check("https://auth.docker.io/token").is_ok());
        assert!(
            check("http://127.0.0.1:5001/token").is_ok(),
            "an insecure host on another port"
        );
        assert!(check("http://auth.docker.io/token")
            .unwrap_err()
            .contains("not a registry configured as insecure"));
        assert!(check("http://localhost:5000/token").is_err());
        assert!(check("ftp://127.0.0.1/token")
            .unwrap_err()
            .contains("`ftp`"));
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("https://169.254.169.254/token")
            .unwrap_err()
            .contains("link-local"));
        assert!(check("https://u:p@auth.io/token").is_err());
        assert!(check_realm(
            &Url::parse("https://169.254.169.254/token").unwrap(),
            &insecure,
            true
        )
        .is_ok());
    }

    fn table(entries: &'static [(&'static str, &'static str)]) -> Lookup {
        Arc::new(move |name: String| {
            let found: Vec<IpAddr> = entries
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, ip)| ip.parse().unwrap())
                .collect();
            Box::pin(async move { Ok(found) })
        })
    }

    #[tokio::test]
    async fn the_resolver_drops_link_local_answers() {
        let entries: &'static [(&'static str, &'static str)] = &[
            ("metadata.test", "169.254.169.254"),
            ("v6.test", "fe80::1"),
            ("mixed.test", "169.254.169.254"),
            ("mixed.test", "10.1.2.3"),
            ("fine.test", "127.0.0.1"),
        ];
        let resolver = GuardedResolver::with_lookup(false, vec![], table(entries));
        for name in ["metadata.test", "v6.test"] {
            let err = resolver.addresses(name).await.unwrap_err();
            let refused = err.downcast_ref::<LinkLocalRefused>().unwrap();
            assert_eq!(refused.name, name);
        }
        assert_eq!(
            resolver.addresses("mixed.test").await.unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolver.addresses("fine.test").await.unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        // Through reqwest's trait, as the client calls it.
        let via_trait: Vec<SocketAddr> = Resolve::resolve(&resolver, "fine.test".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(via_trait, vec!["127.0.0.1:0".parse().unwrap()]);
        assert!(
            Resolve::resolve(&resolver, "metadata.test".parse().unwrap())
                .await
                .is_err()
        );

        let allowing = GuardedResolver::with_lookup(true, vec![], table(entries));
        assert_eq!(allowing.addresses("metadata.test").await.unwrap().len(), 1);

        let fixed = GuardedResolver::with_lookup(
            false,
            vec![("Meta.Fixed".into(), "169.254.169.254".parse().unwrap())],
            table(entries),
        );
        assert!(
            fixed.addresses("meta.fixed").await.is_err(),
            "fixed entries obey the rule too"
        );
    }
}
