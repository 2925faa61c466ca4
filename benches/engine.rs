//! Times one policy decision over registry listings of 10,000 and 100 tags.
//!
//! A self-timing harness (`harness = false`): each decision is timed on its own so the report can
//! give the median and the p99, which is what a reconcile cycle over many Deployments feels.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tagwatch::model::channels::Channels;
use tagwatch::model::filter::parse_filter;
use tagwatch::model::policy::Policy;
use tagwatch::plan::resolve::{resolve, Decision, Request};

/// A listing shaped like a busy repository: mostly GA versions, some `v`-prefixed, some
/// prereleases and builds, and the usual non-version tags. Deterministic, so runs compare.
fn listing(size: usize) -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    (0..size)
        .map(|index| {
            let (major, minor, patch) = (next(8), next(40), next(60));
            let prefix = if next(4) == 0 { "v" } else { "" };
            match next(20) {
                0 => format!("main-{:07x}", next(1 << 28)),
                1 => format!("sha-{index:08x}"),
                2 => format!("{prefix}{major}.{minor}.{patch}-rc.{}", next(12)),
                3 => format!("{prefix}{major}.{minor}.{patch}-beta.{}", next(12)),
                4 => format!("{prefix}{major}.{minor}.{patch}+build.{}", next(100)),
                5 => format!("{prefix}{major}.{minor}"),
                _ => format!("{prefix}{major}.{minor}.{patch}"),
            }
        })
        .collect()
}

struct Timing {
    median: Duration,
    p99: Duration,
}

fn time(iterations: usize, mut decide: impl FnMut() -> Decision) -> Timing {
    for _ in 0..iterations.div_ceil(10) {
        black_box(decide());
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            black_box(decide());
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |quantile: f64| samples[((samples.len() - 1) as f64 * quantile).round() as usize];
    Timing {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn main() {
    let minor = Policy::Minor;
    let glob: Policy = match "glob:*.*".parse() {
        Ok(policy) => policy,
        Err(error) => panic!("{error}"),
    };
    let rc = Channels::Listed(["rc".to_owned()].into());
    let filter = match parse_filter(r"^v?\d") {
        Ok(filter) => filter,
        Err(error) => panic!("{error}"),
    };
    let rejected: BTreeSet<String> = ["3.4.5".to_owned(), "3.9.1".to_owned()].into();

    println!(
        "{:<44} {:>7} {:>12} {:>12}",
        "scenario", "tags", "median", "p99"
    );
    for (size, iterations) in [(10_000, 400), (100, 20_000)] {
        let tags = listing(size);
        let scenarios: [(&str, Request<'_>); 5] = [
            ("minor from 3.2.1", Request::new("3.2.1", &minor)),
            (
                "minor + rc + match filter + rejected",
                Request::new("3.2.1", &minor)
                    .channels(&rc)
                    .filter(Some(&filter))
                    .rejected(&rejected),
            ),
            ("alias v3", Request::new("v3", &minor)),
            (
                "glob:*.* (natural/semver order)",
                Request::new("3.2.1", &glob),
            ),
            (
                "minor with explanation",
                Request::new("3.2.1", &minor).explain(true),
            ),
        ];
        for (name, request) in scenarios {
            let timing = time(iterations, || {
                resolve(black_box(&request), black_box(&tags))
            });
            println!(
                "{name:<44} {size:>7} {:>12?} {:>12?}",
                timing.median, timing.p99
            );
        }
    }
}
