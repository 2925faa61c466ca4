//! Which tags one `tags/list` page holds, and the `Link` to the next page. Pure.

/// One page of a tag list.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub tags: Vec<String>,
    /// `</v2/REPO/tags/list?last=X&n=N>; rel="next"` when more tags follow.
    pub link: Option<String>,
}

/// Selects the page after `last` (by position in `tags`) of at most `n` tags, or of the server's
/// `page_size`, whichever is smaller; everything when neither is set.
pub fn page(
    repo: &str,
    tags: &[String],
    n: Option<usize>,
    last: Option<&str>,
    page_size: Option<usize>,
) -> Page {
    let start = match last {
        Some(last) => tags
            .iter()
            .position(|t| t == last)
            .map_or(tags.len(), |i| i + 1),
        None => 0,
    };
    let size = match (n, page_size) {
        (Some(n), Some(p)) => n.min(p),
        (Some(n), None) => n,
        (None, Some(p)) => p,
        (None, None) => tags.len(),
    };
    let end = start.saturating_add(size).min(tags.len());
    let page: Vec<String> = tags[start..end].to_vec();
    let link = match page.last() {
        Some(last) if end < tags.len() => Some(format!(
            "</v2/{repo}/tags/list?last={last}&n={size}>; rel=\"next\""
        )),
        _ => None,
    };
    Page { tags: page, link }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_follow_last_and_link_until_the_end() {
        let all = tags(&["a", "b", "c", "d", "e"]);
        let first = page("app", &all, None, None, Some(2));
        assert_eq!(first.tags, tags(&["a", "b"]));
        assert_eq!(
            first.link.as_deref(),
            Some("</v2/app/tags/list?last=b&n=2>; rel=\"next\"")
        );
        let third = page("app", &all, Some(2), Some("d"), Some(2));
        assert_eq!(
            third,
            Page {
                tags: tags(&["e"]),
                link: None
            }
        );
    }

    #[test]
    fn a_smaller_n_wins_over_the_page_size() {
        let all = tags(&["a", "b", "c"]);
        assert_eq!(page("app", &all, Some(1), None, Some(2)).tags, tags(&["a"]));
        assert_eq!(
            page("app", &all, Some(0), None, None),
            Page {
                tags: vec![],
                link: None
            }
        );
    }

    #[test]
    fn an_unknown_last_gives_an_empty_page() {
        let all = tags(&["a", "b"]);
        assert_eq!(
            page("app", &all, None, Some("zzz"), None),
            Page {
                tags: vec![],
                link: None
            }
        );
    }
}
