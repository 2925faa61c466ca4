//! The `docker-registry` child process: a free port, start, readiness, and the output readers.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::log::{RequestLog, HARNESS_USER_AGENT};

/// Where Debian's `docker-registry` package installs the binary.
pub const BINARY: &str = "/usr/bin/docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Another process may take the port between our probe and the registry's bind.
const START_ATTEMPTS: usize = 3;

/// The error a test shows when the registry binary is not installed.
pub fn missing_binary_message(binary: &Path) -> String {
    format!(
        "the registry binary {} is missing: the registry tests need CNCF distribution. \
         Install it with: apt-get update && apt-get install -y docker-registry",
        binary.display()
    )
}

pub struct Running {
    pub child: Child,
    pub port: u16,
    pub log: RequestLog,
}

/// Starts the registry with the config `render(port)` gives, retrying on a port clash.
pub async fn start(
    binary: &Path,
    config_path: &Path,
    render: impl Fn(u16) -> String,
) -> anyhow::Result<Running> {
    if !binary.exists() {
        anyhow::bail!(missing_binary_message(binary));
    }
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        std::fs::write(config_path, render(port))?;
        match start_on(binary, config_path, port).await {
            Ok(running) => return Ok(running),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn start_on(binary: &Path, config_path: &Path, port: u16) -> anyhow::Result<Running> {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", binary.display()))?;
    let log = RequestLog::default();
    if let Some(stdout) = child.stdout.take() {
        log.follow_access_log(stdout);
    }
    if let Some(stderr) = child.stderr.take() {
        log.follow_app_log(stderr);
    }

    let http = harness_client()?;
    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "docker-registry exited with {status} before it was ready:\n{}",
                log.app_tail(20)
            );
        }
        // Any HTTP answer means it listens: 401 is the ready answer of an authenticating registry.
        if http.get(&url).send().await.is_ok() {
            return Ok(Running { child, port, log });
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.start_kill();
            anyhow::bail!(
                "docker-registry not ready on port {port} after {READY_TIMEOUT:?}:\n{}",
                log.app_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client whose requests `Registry::requests()` leaves out.
pub fn harness_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(HARNESS_USER_AGENT)
        .timeout(Duration::from_secs(5))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_message_says_how_to_install() {
        let message = missing_binary_message(Path::new("/nonexistent/docker-registry"));
        assert!(message.contains("apt-get update && apt-get install -y docker-registry"));
        assert!(message.contains("/nonexistent/docker-registry"));
    }
}
