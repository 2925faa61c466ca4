//! Tests that cannot run where they are run say so, by name: on stderr at once, and in a skip
//! log that CI prints at the end (`skipped-tests.txt` in cargo's per-target temporary directory).
//!
//! A test never returns early in silence: a skipped test that looks passed would hide that a
//! real cluster was never checked.

use std::io::Write as _;
use std::path::Path;

/// The file, under `CARGO_TARGET_TMPDIR`, that collects skip reports.
pub const SKIP_LOG: &str = "skipped-tests.txt";

/// Records that `test` was skipped and why. `log_dir` is the calling test crate's
/// `CARGO_TARGET_TMPDIR`; the [`skip!`](crate::skip!) macro fills in both.
pub fn report(test: &str, reason: &str, log_dir: &str) {
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    let path = Path::new(log_dir).join(SKIP_LOG);
    let written = std::fs::create_dir_all(log_dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(file, "{line}")
    });
    if let Err(e) = written {
        eprintln!("cannot record the skip in {}: {e}", path.display());
    }
}

/// The path of the function this expands in, without the crate and closure segments:
/// `canary::a_failing_canary_is_rolled_back`.
pub fn clean_name(raw: &str) -> String {
    let mut parts: Vec<&str> = raw.split("::").collect();
    while parts
        .last()
        .is_some_and(|p| *p == "f" || p.starts_with("{{"))
    {
        parts.pop();
    }
    if parts.len() > 1 {
        parts.remove(0);
    }
    parts.join("::")
}

/// The name of the enclosing test function.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn f() {}
        $crate::skip::clean_name(::std::any::type_name_of_val(&f))
    }};
}

/// Reports the enclosing test as skipped (it must still `return` itself).
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {
        $crate::skip::report(
            &$crate::test_name!(),
            &format!($($reason)+),
            env!("CARGO_TARGET_TMPDIR"),
        )
    };
}

/// The in-process API server, or: report the test skipped and return `Ok(())` from it (or
/// the value after `=>`, e.g. `()`). For what only the test server can do (its request log,
/// its knobs, raw wire bodies, breaking a version on demand).
#[macro_export]
macro_rules! test_server_or_skip {
    ($cluster:expr => (), $($reason:tt)+) => {
        match $cluster.server() {
            Some(server) => server,
            None => {
                $crate::skip!($($reason)+);
                return;
            }
        }
    };
    ($cluster:expr => $ret:expr, $($reason:tt)+) => {
        match $cluster.server() {
            Some(server) => server,
            None => {
                $crate::skip!($($reason)+);
                return $ret;
            }
        }
    };
    ($cluster:expr, $($reason:tt)+) => {
        $crate::test_server_or_skip!($cluster => Ok(()), $($reason)+)
    };
}

/// Declares that the test needs its images to run (pods become Ready, rollouts complete).
/// On the test bed every image then runs; on a real cluster the test goes on only when
/// `TAGWATCH_E2E_RUNS_IMAGES` says the cluster can pull and run them, else it is reported
/// skipped and returns `Ok(())`.
#[macro_export]
macro_rules! require_running_images {
    ($cluster:expr => ()) => {
        if !$cluster.run_images() {
            $crate::skip!(
                "needs its test images to run (pods Ready, rollouts complete); set {} on a cluster that can pull them",
                $crate::cluster::RUNS_IMAGES_ENV
            );
            return;
        }
    };
    ($cluster:expr => $ret:expr) => {
        if !$cluster.run_images() {
            $crate::skip!(
                "needs its test images to run (pods Ready, rollouts complete); set {} on a cluster that can pull them",
                $crate::cluster::RUNS_IMAGES_ENV
            );
            return $ret;
        }
    };
    ($cluster:expr) => {
        $crate::require_running_images!($cluster => Ok(()))
    };
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_drop_the_crate_and_closure_segments() {
        let cases = [
            ("e2e::canary::passes::{{closure}}::f", "canary::passes"),
            ("e2e::canary::passes::f", "canary::passes"),
            (
                "e2e::apiserver_fidelity::wire::bodies::{{closure}}::{{closure}}::f",
                "apiserver_fidelity::wire::bodies",
            ),
            ("lonely::f", "lonely"),
        ];
        for (raw, want) in cases {
            assert_eq!(clean_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn the_macro_names_this_test() {
        let name = crate::test_name!();
        assert_eq!(name, "skip::tests::the_macro_names_this_test");
    }
}
