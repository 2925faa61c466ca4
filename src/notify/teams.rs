//! A Microsoft Teams workflow-webhook message: one Adaptive Card (pure).
//!
//! Teams' "Post to a channel when a webhook request is received" workflow takes a `message`
//! whose attachments are Adaptive Cards; version 1.4 is the newest every Teams client renders.

use serde_json::{json, Value};

use super::Notice;

pub fn body(notice: &Notice) -> Value {
    let workload = notice.regarding.to_string();
    let warning = notice.type_ == "Warning";
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {
                        "type": "TextBlock",
                        "size": "Medium",
                        "weight": "Bolder",
                        "wrap": true,
                        "color": if warning { "Attention" } else { "Good" },
                        "text": format!("{}: {workload}", notice.event.title()),
                    },
                    {"type": "TextBlock", "wrap": true, "text": notice.message},
                    {
                        "type": "FactSet",
                        "facts": [
                            {"title": "Workload", "value": workload},
                            {"title": "Event", "value": notice.event.name()},
                            {"title": "Reason", "value": format!("{} ({})", notice.reason, notice.type_)},
                            {"title": "Time", "value": notice.time.to_string()},
                        ]
                    }
                ]
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::notice;
    use crate::notify::Event;

    #[test]
    fn one_adaptive_card_with_the_facts() {
        let body = body(&notice(Event::Rollback, "shop"));
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["text"], "Rolled back: shop/Deployment/web");
        assert_eq!(card["body"][0]["color"], "Good");
        assert_eq!(
            card["body"][1]["text"],
            "web: r.io/app:1.0.0 → r.io/app:1.1.0"
        );
        assert_eq!(card["body"][2]["facts"][1]["value"], "rollback");
        assert_eq!(card["body"][2]["facts"][0]["value"], "shop/Deployment/web");
    }
}
