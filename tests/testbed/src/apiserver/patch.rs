//! PATCH bodies: JSON Patch (RFC 6902) and merge patch (RFC 7386), chosen by content type.

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatchType {
    Json,
    /// Also used for strategic merge patches: lists are replaced, not merged by key.
    Merge,
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
            // Server-side apply (application/apply-patch+yaml) is not served here.
            _ => Err(ApiError::unsupported_media_type()),
        }
    }
}

/// Returns the patched copy of `current`; `current` itself is never touched.
pub(crate) fn apply(kind: PatchType, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut patched = current.clone();
    match kind {
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
            (Some("application/apply-patch+yaml"), None),
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
