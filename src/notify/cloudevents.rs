//! A CloudEvents 1.0 event in structured mode (pure): the whole event is the JSON body, sent as
//! `application/cloudevents+json`.

use serde_json::{json, Value};

use super::Notice;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

pub fn body(notice: &Notice) -> Value {
    let r = &notice.regarding;
    json!({
        "specversion": "1.0",
        "type": format!("dev.tagwatch.{}", notice.event.name()),
        "source": format!("tagwatch/{}/{}/{}", r.namespace, r.kind, r.name),
        "id": notice.id,
        "time": notice.time.to_string(),
        "subject": r.to_string(),
        "datacontenttype": "application/json",
        "data": {
            "event": notice.event.name(),
            "reason": notice.reason,
            "type": notice.type_,
            "workload": super::webhook::workload(notice),
            "message": notice.message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::notice;
    use crate::notify::Event;

    #[test]
    fn the_required_attributes_and_the_data() {
        let body = body(&notice(Event::CanaryPromoted, "shop"));
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "dev.tagwatch.canary.promoted");
        assert_eq!(body["source"], "tagwatch/shop/Deployment/web");
        assert_eq!(body["id"], "0123");
        assert_eq!(body["time"], "2025-03-04T05:06:07Z");
        assert_eq!(body["subject"], "shop/Deployment/web");
        assert_eq!(body["datacontenttype"], "application/json");
        assert_eq!(body["data"]["reason"], "CanaryPromoted");
        assert_eq!(body["data"]["workload"]["name"], "web");
    }
}
