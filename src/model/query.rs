//! The canary query gate's pure part: a PromQL template from a workload's annotations, rendered
//! for one track with its values escaped, and the threshold its answer is judged by.
//!
//! - `tagwatch.dev/canary-query`: PromQL with `{{namespace}}`, `{{deployment}}` and `{{track}}`
//!   placeholders, meant to sit inside double-quoted label matchers
//!   (`deployment="{{deployment}}"`). Values are escaped as PromQL strings, not as regular
//!   expressions: inside `=~"..."` a value matches as a pattern.
//! - `tagwatch.dev/canary-threshold`: a comparison and a number, such as `< 0.05`.

use std::fmt;
use std::str::FromStr;

/// The placeholders a canary query may use.
const PLACEHOLDERS: [&str; 3] = ["namespace", "deployment", "track"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Comparison {
    /// Two-character operators first, so `<=` is not read as `<` followed by `= 1`.
    const ALL: [(&'static str, Comparison); 6] = [
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// What the canary's query result must satisfy, e.g. `< 0.05`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub comparison: Comparison,
    pub value: f64,
}

const THRESHOLD_FORMS: &str =
    "expected one of <, <=, >, >=, ==, != followed by a finite number, e.g. \"< 0.05\" or \">=1\"";

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Threshold, String> {
        let text = s.trim();
        let Some((rest, comparison)) = Comparison::ALL
            .iter()
            .find_map(|(symbol, comparison)| Some((text.strip_prefix(symbol)?, *comparison)))
        else {
            return Err(format!(
                "invalid canary threshold {s:?}: no comparison; {THRESHOLD_FORMS}"
            ));
        };
        let number = rest.trim();
        let value = number
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                format!("invalid canary threshold {s:?}: {number:?} is not a finite number; {THRESHOLD_FORMS}")
            })?;
        Ok(Threshold { comparison, value })
    }
}

impl Threshold {
    /// Whether a query result passes. NaN (Prometheus' answer to 0/0) never does, not even `!=`.
    pub fn holds(&self, value: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self.comparison {
            Comparison::Lt => value < self.value,
            Comparison::Le => value <= self.value,
            Comparison::Gt => value > self.value,
            Comparison::Ge => value >= self.value,
            Comparison::Eq => value == self.value,
            Comparison::Ne => value != self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.comparison.symbol(), self.value)
    }
}

/// One piece of a query template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// `raw` is the whole `{{ name }}`; `name` is trimmed.
    Placeholder {
        raw: &'a str,
        name: &'a str,
    },
    /// A `{{` or `}}` without its partner, at byte offset `at`.
    Unbalanced {
        raw: &'a str,
        at: usize,
    },
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut offset = 0;
    while offset < template.len() {
        let rest = &template[offset..];
        let open = rest.find("{{");
        let close = rest.find("}}");
        match (open, close) {
            (None, None) => {
                pieces.push(Piece::Text(rest));
                break;
            }
            (open, Some(close)) if open.is_none_or(|open| close < open) => {
                pieces.push(Piece::Text(&rest[..close]));
                pieces.push(Piece::Unbalanced {
                    raw: &rest[close..close + 2],
                    at: offset + close,
                });
                offset += close + 2;
            }
            (Some(open), _) => {
                pieces.push(Piece::Text(&rest[..open]));
                let inner = &rest[open + 2..];
                match (inner.find("}}"), inner.find("{{")) {
                    (Some(end), next) if next.is_none_or(|next| end < next) => {
                        pieces.push(Piece::Placeholder {
                            raw: &rest[open..open + 2 + end + 2],
                            name: inner[..end].trim(),
                        });
                        offset += open + 2 + end + 2;
                    }
                    _ => {
                        pieces.push(Piece::Unbalanced {
                            raw: &rest[open..open + 2],
                            at: offset + open,
                        });
                        offset += open + 2;
                    }
                }
            }
            // `close` is None or before `open` whenever `open` is None: handled above.
            (None, Some(_)) => break,
        }
    }
    pieces.retain(|p| *p != Piece::Text(""));
    pieces
}

/// Checks a `tagwatch.dev/canary-query` template: not empty, `{{`/`}}` balanced, and only the
/// placeholders `{{namespace}}`, `{{deployment}}` and `{{track}}`.
pub fn check_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the canary query is empty".to_string());
    }
    for piece in pieces(template) {
        match piece {
            Piece::Text(_) => {}
            Piece::Placeholder { raw, name } => {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder {raw} in the canary query; known are \
                         {{{{namespace}}}}, {{{{deployment}}}} and {{{{track}}}}"
                    ));
                }
            }
            Piece::Unbalanced { raw, at } => {
                let partner = if raw == "{{" { "}}" } else { "{{" };
                return Err(format!(
                    "unbalanced {raw:?} at byte {at} of the canary query: no matching {partner:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Substitutes the placeholders. Values are label values: `\`, `"` and newlines are escaped as
/// in a PromQL double-quoted string, so a name cannot break out of its quotes. A substituted
/// value is never scanned again; unknown placeholders stay as written (see [`check_template`]).
pub fn render(template: &str, namespace: &str, deployment: &str, track: &str) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder { raw, name } => match name {
                "namespace" => escape_into(&mut out, namespace),
                "deployment" => escape_into(&mut out, deployment),
                "track" => escape_into(&mut out, track),
                _ => out.push_str(raw),
            },
            Piece::Unbalanced { raw, .. } => out.push_str(raw),
        }
    }
    out
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn threshold(comparison: Comparison, value: f64) -> Threshold {
        Threshold { comparison, value }
    }

    #[test]
    fn thresholds_parse() {
        use Comparison::*;
        let valid = [
            ("< 0.05", threshold(Lt, 0.05)),
            ("<0.05", threshold(Lt, 0.05)),
            ("  <=   0.1 ", threshold(Le, 0.1)),
            ("> 0.99", threshold(Gt, 0.99)),
            (">= 1", threshold(Ge, 1.0)),
            (">=1", threshold(Ge, 1.0)),
            ("== 0", threshold(Eq, 0.0)),
            ("!= 0", threshold(Ne, 0.0)),
            ("< -2.5", threshold(Lt, -2.5)),
            ("< 1e-3", threshold(Lt, 0.001)),
        ];
        for (text, want) in valid {
            assert_eq!(text.parse::<Threshold>(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn invalid_thresholds_name_the_accepted_forms() {
        for text in [
            "", "0.05", "=< 1", "= 1", "=> 1", "<< 1", "<== 1", "< ", "<", "< abc", "< 0.05 x",
            "< NaN", "< inf", "> -inf", "lt 0.05", "≤ 0.1", "<>1",
        ] {
            let err = text
                .parse::<Threshold>()
                .expect_err(&format!("{text:?} is not a threshold"));
            assert!(err.contains(&format!("{text:?}")), "{err}");
            assert!(
                err.contains("<, <=, >, >=, ==, !=") && err.contains("\"< 0.05\""),
                "{err}"
            );
        }
    }

    #[test]
    fn thresholds_hold() {
        use Comparison::*;
        let table = [
            (threshold(Lt, 0.05), 0.02, true),
            (threshold(Lt, 0.05), 0.05, false),
            (threshold(Le, 0.05), 0.05, true),
            (threshold(Le, 0.05), 0.06, false),
            (threshold(Gt, 0.99), 1.0, true),
            (threshold(Gt, 0.99), 0.99, false),
            (threshold(Ge, 1.0), 1.0, true),
            (threshold(Ge, 1.0), 0.5, false),
            (threshold(Eq, 0.0), 0.0, true),
            (threshold(Eq, 0.0), -0.0, true),
            (threshold(Eq, 0.0), 0.1, false),
            (threshold(Ne, 0.0), 0.1, true),
            (threshold(Ne, 0.0), 0.0, false),
            (threshold(Lt, 0.05), f64::NEG_INFINITY, true),
            (threshold(Gt, 0.05), f64::INFINITY, true),
        ];
        for (t, value, want) in table {
            assert_eq!(t.holds(value), want, "{value} {t}");
        }
        for comparison in [Lt, Le, Gt, Ge, Eq, Ne] {
            assert!(
                !threshold(comparison, 0.0).holds(f64::NAN),
                "NaN never holds: {comparison:?}"
            );
        }
    }

    #[test]
    fn thresholds_display_and_round_trip() {
        for (text, shown) in [
            ("<0.05", "< 0.05"),
            ("<= 0.1", "<= 0.1"),
            (">0.99", "> 0.99"),
            (">= 1", ">= 1"),
            ("==0", "== 0"),
            ("!= 0", "!= 0"),
        ] {
            let t: Threshold = text.parse().expect("valid");
            assert_eq!(t.to_string(), shown);
            assert_eq!(shown.parse::<Threshold>(), Ok(t));
        }
    }

    const ERROR_RATIO: &str = "sum(rate(http_requests_total{namespace=\"{{namespace}}\",\
        deployment=\"{{deployment}}\",track=\"{{track}}\",code=~\"5..\"}[1m])) / \
        sum(rate(http_requests_total{namespace=\"{{namespace}}\",deployment=\"{{deployment}}\",\
        track=\"{{track}}\"}[1m]))";

    #[test]
    fn render_substitutes_every_placeholder() {
        assert_eq!(
            render(ERROR_RATIO, "shop", "web", "canary"),
            "sum(rate(http_requests_total{namespace=\"shop\",deployment=\"web\",track=\"canary\",\
             code=~\"5..\"}[1m])) / sum(rate(http_requests_total{namespace=\"shop\",\
             deployment=\"web\",track=\"canary\"}[1m]))"
        );
        assert_eq!(
            render("x{a=\"{{ track }}\"}", "n", "d", "primary"),
            "x{a=\"primary\"}"
        );
        assert_eq!(render("up", "n", "d", "t"), "up");
        assert_eq!(render("", "n", "d", "t"), "");
    }

    #[test]
    fn render_escapes_label_values() {
        assert_eq!(
            render("x{d=\"{{deployment}}\"}", "n", "a\"b", "t"),
            "x{d=\"a\\\"b\"}"
        );
        assert_eq!(
            render("x{d=\"{{deployment}}\"}", "n", "a\\b", "t"),
            "x{d=\"a\\\\b\"}"
        );
        // A value trying to close the string and add a matcher stays one label value.
        assert_eq!(
            render("x{n=\"{{namespace}}\"}", "\"} or vector(0) #", "d", "t"),
            "x{n=\"\\\"} or vector(0) #\"}"
        );
        assert_eq!(render("\"{{track}}\"", "n", "d", "a\nb"), "\"a\\nb\"");
        // A substituted value is not scanned for placeholders again.
        assert_eq!(
            render("{{namespace}}/{{track}}", "{{track}}", "d", "t"),
            "{{track}}/t"
        );
    }

    #[test]
    fn render_leaves_unknown_and_unbalanced_text_alone() {
        assert_eq!(
            render("{{pod}} {{track}} }} {{", "n", "d", "t"),
            "{{pod}} t }} {{"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert_eq!(check_template(ERROR_RATIO), Ok(()));
        assert_eq!(check_template("up"), Ok(()));
        assert_eq!(check_template("x{d=\"{{ deployment }}\"}"), Ok(()));
        let unknown = check_template("x{d=\"{{deploy}}\"}").expect_err("unknown placeholder");
        assert!(unknown.contains("{{deploy}}"), "{unknown}");
        assert!(
            unknown.contains("{{namespace}}, {{deployment}} and {{track}}"),
            "{unknown}"
        );
        for (template, at) in [
            ("x{d=\"{{deployment\"}", "{{"),
            ("x{d=\"deployment}}\"}", "}}"),
            ("{{track}} {{", "{{"),
            ("{{ {{track}}", "{{"),
            ("}}{{track}}", "}}"),
        ] {
            let err = check_template(template).expect_err(template);
            assert!(
                err.contains("unbalanced") && err.contains(&format!("{at:?}")),
                "{template}: {err}"
            );
        }
        assert!(check_template(" ").is_err());
        assert!(check_template("{{}}").expect_err("empty").contains("{{}}"));
    }
}
