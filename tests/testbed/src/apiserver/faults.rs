//! Injected failures: per method and path prefix, for a number of requests.

use std::time::Duration;

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this code and a matching `Status` body (429 also sends `Retry-After: 1`).
    Status(u16),
    /// Break the connection instead of answering.
    Drop,
    /// Hold the request this long, then serve it normally: a slow or congested API server.
    Delay(Duration),
    /// Refuse a write as a ValidatingAdmissionPolicy in Deny mode does (15): 422 `Invalid` with
    /// `details.causes` carrying this message; nothing is written.
    AdmissionDenied(String),
}

pub(crate) struct FaultRule {
    method: String,
    path_prefix: String,
    fault: Fault,
    remaining: usize,
}

impl FaultRule {
    pub fn new(method: &str, path_prefix: &str, fault: Fault, times: usize) -> FaultRule {
        FaultRule {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            fault,
            remaining: times,
        }
    }
}

/// Consumes one use of the first rule matching the request, if any.
pub(crate) fn take(rules: &mut Vec<FaultRule>, method: &str, path: &str) -> Option<Fault> {
    let rule = rules.iter_mut().find(|r| {
        r.remaining > 0
            && (r.method == "*" || r.method.eq_ignore_ascii_case(method))
            && path.starts_with(&r.path_prefix)
    })?;
    rule.remaining -= 1;
    let fault = rule.fault.clone();
    rules.retain(|r| r.remaining > 0);
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_fires_the_given_number_of_times() {
        let mut rules = vec![FaultRule::new("get", "/apis/apps", Fault::Status(500), 2)];
        assert_eq!(take(&mut rules, "POST", "/apis/apps/v1/deployments"), None);
        assert_eq!(take(&mut rules, "GET", "/api/v1/pods"), None);
        for _ in 0..2 {
            let got = take(&mut rules, "GET", "/apis/apps/v1/deployments");
            assert_eq!(got, Some(Fault::Status(500)));
        }
        assert_eq!(take(&mut rules, "GET", "/apis/apps/v1/deployments"), None);
    }

    #[test]
    fn a_delay_is_taken_like_any_other_fault() {
        let wait = Duration::from_millis(1500);
        let mut rules = vec![FaultRule::new(
            "put",
            "/apis/coordination.k8s.io",
            Fault::Delay(wait),
            1,
        )];
        assert_eq!(
            take(
                &mut rules,
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l"
            ),
            None
        );
        let got = take(
            &mut rules,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
        );
        assert_eq!(got, Some(Fault::Delay(wait)));
        assert!(rules.is_empty());
    }
}
