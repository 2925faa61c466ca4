//! The workload kinds tagwatch keeps current, and what differs between them: where the pod
//! template lives, how a rollout is judged done, and how (or whether) a canary runs. Everything
//! else — annotations, policies, aliases, pins, manual changes, history — is the same for all.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Kind {
    #[default]
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    /// Argo Rollouts' `argoproj.io/v1alpha1` Rollout, served by a CRD that may be absent.
    Rollout,
}

/// How a kind runs a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryMode {
    /// A separate `<name>-canary` Deployment beside the primary.
    Separate,
    /// The StatefulSet's own rolling-update partition: the highest ordinals first.
    Partition,
    /// Argo Rollouts runs its own canary; tagwatch's canary annotations are refused.
    External,
    /// No canary for this kind (DaemonSet, CronJob): refused.
    Unsupported,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::CronJob,
        Kind::Rollout,
    ];

    /// The `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
            Kind::Rollout => "Rollout",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps",
            Kind::CronJob => "batch",
            Kind::Rollout => "argoproj.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::Rollout => "v1alpha1",
            _ => "v1",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps/v1",
            Kind::CronJob => "batch/v1",
            Kind::Rollout => "argoproj.io/v1alpha1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::CronJob => "cronjobs",
            Kind::Rollout => "rollouts",
        }
    }

    /// kubectl's short name, as the CLI takes it.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Deployment => "deploy",
            Kind::StatefulSet => "sts",
            Kind::DaemonSet => "ds",
            Kind::CronJob => "cj",
            Kind::Rollout => "rollout",
        }
    }

    /// A kind as people write it: `deploy`, `deployment`, `deployments`, `Deployment`, ...
    pub fn parse(text: &str) -> Option<Kind> {
        let text = text.trim().to_ascii_lowercase();
        Kind::ALL.into_iter().find(|kind| {
            text == kind.short()
                || text == kind.plural()
                || text == kind.name().to_ascii_lowercase()
                || (*kind == Kind::Rollout && text == "ro")
        })
    }

    /// The JSON pointer of the pod template in an object of this kind.
    pub fn template_pointer(self) -> &'static str {
        match self {
            Kind::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }

    pub fn canary_mode(self) -> CanaryMode {
        match self {
            Kind::Deployment => CanaryMode::Separate,
            Kind::StatefulSet => CanaryMode::Partition,
            Kind::Rollout => CanaryMode::External,
            Kind::DaemonSet | Kind::CronJob => CanaryMode::Unsupported,
        }
    }

    /// Kinds without `progressDeadlineSeconds`: tagwatch keeps its own deadline
    /// (`tagwatch.dev/progress-deadline`) for the automatic rollback.
    pub fn needs_own_deadline(self) -> bool {
        matches!(self, Kind::StatefulSet | Kind::DaemonSet)
    }
}

impl fmt::Display for Kind {
    /// Lowercase, as in `kubectl get statefulset`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_the_way_kubectl_names_them() {
        let cases = [
            ("deploy", Some(Kind::Deployment)),
            ("Deployment", Some(Kind::Deployment)),
            ("deployments", Some(Kind::Deployment)),
            ("sts", Some(Kind::StatefulSet)),
            ("statefulset", Some(Kind::StatefulSet)),
            ("ds", Some(Kind::DaemonSet)),
            ("daemonsets", Some(Kind::DaemonSet)),
            ("cj", Some(Kind::CronJob)),
            ("CronJob", Some(Kind::CronJob)),
            ("rollout", Some(Kind::Rollout)),
            ("ro", Some(Kind::Rollout)),
            ("rs", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(Kind::parse(text), want, "{text}");
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_names() {
        for kind in Kind::ALL {
            for name in [kind.short(), kind.plural(), kind.name()] {
                assert_eq!(Kind::parse(name), Some(kind));
            }
            assert!(kind.template_pointer().ends_with("/template"));
            assert!(kind.api_version().ends_with(kind.version()));
            assert!(kind.api_version().starts_with(kind.group()));
        }
    }
}
