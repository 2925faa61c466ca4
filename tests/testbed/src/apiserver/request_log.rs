//! The record of every HTTP request the server answered.

/// One request as the server saw it, with the status it answered (0 for a dropped connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub content_type: Option<String>,
    pub body: String,
    pub status: u16,
}

impl RecordedRequest {
    /// The decoded value of one query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let uri: http::Uri = format!("/?{}", self.query).parse().ok()?;
        let axum::extract::Query(params) =
            axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(&uri)
                .ok()?;
        params.get(name).cloned()
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.query_param("watch").as_deref(), Some("true" | "1"))
    }

    /// A GET on a collection that is not a watch.
    pub fn is_list_of(&self, collection_path: &str) -> bool {
        self.method == "GET" && self.path == collection_path && !self.is_watch()
    }
}
