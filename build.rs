//! Stamps the git commit into `tagwatch_build_info`: `TAGWATCH_GIT_COMMIT` if set (the
//! Dockerfile passes it, having no `.git`), else `git rev-parse`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TAGWATCH_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("TAGWATCH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            let text = text.trim();
            (out.status.success() && !text.is_empty()).then(|| text.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TAGWATCH_GIT_COMMIT={commit}");
}
