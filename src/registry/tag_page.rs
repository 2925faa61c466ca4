//! One `tags/list` page (`{"name": ..., "tags": [...]}`), read with a bound on how many tags it
//! may add: the count is checked as each tag is read, so a page of millions of short tags is
//! refused before it is held in memory.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::json_problem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The page holds more tags than `room`.
    TooMany,
    /// Not a tag list; the reason never quotes the body.
    Malformed(String),
}

/// The tags of one page, at most `room` of them. A missing or `null` `tags` is an empty page
/// (distribution answers an emptied repository that way).
pub fn parse_tag_page(body: &[u8], room: usize) -> Result<Vec<String>, PageError> {
    let over = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result = PageSeed { room, over: &over }
        .deserialize(&mut deserializer)
        .and_then(|tags| deserializer.end().map(|()| tags));
    match result {
        Ok(tags) => Ok(tags),
        Err(_) if over.get() => Err(PageError::TooMany),
        Err(e) => Err(PageError::Malformed(format!(
            "tag list {}",
            json_problem(&e)
        ))),
    }
}

struct PageSeed<'a> {
    room: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tag list object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut tags: Option<Vec<String>> = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key {
                KeyName::Tags if tags.is_some() => {
                    return Err(de::Error::custom("`tags` given twice"));
                }
                KeyName::Tags => {
                    tags = Some(map.next_value_seed(TagsSeed {
                        room: self.room,
                        over: self.over,
                    })?);
                }
                KeyName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(tags.unwrap_or_default())
    }
}

enum KeyName {
    Tags,
    Other,
}

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<KeyName, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyName, E> {
                Ok(if key == "tags" {
                    KeyName::Tags
                } else {
                    KeyName::Other
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct TagsSeed<'a> {
    room: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        // `any`, so `null` reaches visit_unit instead of failing as "not a sequence".
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tags or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut tags = Vec::new();
        while let Some(tag) = seq.next_element::<String>()? {
            if tags.len() >= self.room {
                self.over.set(true);
                return Err(de::Error::custom("more tags than allowed"));
            }
            tags.push(tag);
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pages() {
        assert_eq!(
            parse_tag_page(br#"{"name":"app","tags":["1.0","2.0"]}"#, 10).unwrap(),
            ["1.0", "2.0"]
        );
        assert_eq!(
            parse_tag_page(br#"{"name":"app","tags":null}"#, 10).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_tag_page(br#"{"name":"app"}"#, 10).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_tag_page(br#"{"tags":["a"],"extra":{"x":[1,2]}}"#, 1).unwrap(),
            ["a"]
        );
    }

    #[test]
    fn room_is_checked_tag_by_tag() {
        let body = format!(
            r#"{{"tags":[{}]}}"#,
            (0..200_000)
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse_tag_page(body.as_bytes(), 200_000).unwrap().len(),
            200_000
        );
        assert_eq!(
            parse_tag_page(body.as_bytes(), 199_999),
            Err(PageError::TooMany)
        );
        assert_eq!(
            parse_tag_page(br#"{"tags":["a"]}"#, 0),
            Err(PageError::TooMany)
        );
        assert_eq!(parse_tag_page(br#"{"tags":[]}"#, 0), Ok(vec![]));
    }

    #[test]
    fn malformed_pages_never_quote_the_body() {
        for body in [
            &br#"{"tags":"SECRET-ISH"}"#[..],
            br#"{"tags":["a",1]}"#,
            br#"["SECRET-ISH"]"#,
            br#"{"tags":["a"],"tags":["b"]}"#,
            br#"{"tags":["a"]} trailing"#,
            b"<html>SECRET-ISH</html>",
            br#"{"name":"app","tags":["1.0""#,
            b"",
        ] {
            match parse_tag_page(body, 10) {
                Err(PageError::Malformed(reason)) => {
                    assert!(!reason.contains("SECRET-ISH"), "{reason}")
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), room in 0usize..8) {
            if let Ok(tags) = parse_tag_page(&body, room) {
                prop_assert!(tags.len() <= room);
            }
        }

        #[test]
        fn arbitrary_json_shaped_bodies_never_panic(
            body in r#"\{("(tags|name|x)":(null|\[("[a-z0-9.]{0,4}",?){0,6}\]|"[a-z]*"|[0-9]{1,3}|\{\}),?){0,4}\}"#,
            room in 0usize..8,
        ) {
            if let Ok(tags) = parse_tag_page(body.as_bytes(), room) {
                prop_assert!(tags.len() <= room);
            }
        }
    }
}
