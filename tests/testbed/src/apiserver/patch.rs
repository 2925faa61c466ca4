//! PATCH bodies: JSON Patch (RFC 6902) and merge patch (RFC 7386), chosen by content type.

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatchType {
    Json,
    /// Also used for strategic merge patches: lists are replaced, not merged by key.
    Merge,
    /// Server-side apply (see `managed`).
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: Option<&str>) -> Result<PatchType, ApiError> {
        let media = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                Ok(PatchType::Merge)
            }
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type()),
        }
    }
}

/// An apply body: YAML (JSON is YAML too) holding a whole object with apiVersion and kind.
pub(crate) fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_norway::from_slice(body)
        .map_err(|e| ApiError::bad_request(&format!("error decoding YAML: {e}")))?;
    let named = |field: &str| value[field].as_str().is_some_and(|v| !v.is_empty());
    if !value.is_object() || !named("apiVersion") || !named("kind") {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the applied configuration: an apply body needs apiVersion and kind",
        ));
    }
    Ok(value)
}

/// Returns the patched copy of `current`; `current` itself is never touched.
pub(crate) fn apply(kind: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut patched = current.clone();
    match kind {
        PatchType::Apply => return parse_apply(body),
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(&format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut patched, &ops).map_err(|_| ApiError::patch_rejected())?;
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(&format!("error decoding patch: {e}")))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request was in an unknown format",
                ));
            }
            json_patch::merge(&mut patched, &patch);
        }
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_pick_the_patch_kind() {
        let cases = [
            (Some("application/json-patch+json"), Some(PatchType::Json)),
            (
                Some("application/merge-patch+json; charset=utf-8"),
                Some(PatchType::Merge),
            ),
            (
                Some("application/strategic-merge-patch+json"),
                Some(PatchType::Merge),
            ),
            (Some("application/apply-patch+yaml"), Some(PatchType::Apply)),
            (Some("text/plain"), None),
            (None, None),
        ];
        for (content_type, want) in cases {
            let got = PatchType::from_content_type(content_type).ok();
            assert_eq!(got, want, "{content_type:?}");
        }
    }

    #[test]
    fn failing_test_op_leaves_nothing_changed() {
        let doc = json!({"a": 1});
        let body =
            br#"[{"op":"replace","path":"/a","value":2},{"op":"test","path":"/a","value":9}]"#;
        let err = apply(PatchType::Json, &doc, body).err().map(|e| e.code);
        assert_eq!(err, Some(422));
        assert_eq!(doc, json!({"a": 1}));
    }
}
