//! The `tagwatch` binary itself: `run`, `plan` and `resolve`, as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tagwatch_testbed::cluster::TestCluster;
use tagwatch_testbed::registry::Registry;
use tagwatch_testbed::wait;

use crate::support::{deployment, free_port, image, push, Tagwatch};

const BIN: &str = env!("CARGO_BIN_EXE_tagwatch");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_prints_decisions_and_writes_nothing() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0", "1.1.0"]).await;
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .create(&cluster, &ns)
        .await;
    deployment("bad")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("sideways")
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    let output = Command::new(BIN)
        .args(["plan", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "-n",
            &ns,
            "--insecure-registry",
            &registry.host(),
            "-o",
            "json",
        ])
        .output()
        .expect("run tagwatch plan");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let row = |name: &str| {
        rows.as_array()
            .expect("array")
            .iter()
            .find(|r| r["workload"] == format!("{ns}/{name}"))
            .cloned()
            .expect("row")
    };
    assert_eq!(row("web")["decision"], "update");
    assert_eq!(row("web")["tag"], "1.1.0");
    assert_eq!(row("bad")["decision"], "invalid");
    assert!(row("bad")["reason"]
        .as_str()
        .expect("reason")
        .contains("tagwatch.dev/policy"));
    assert_eq!(
        image(&cluster, &ns, "web").await,
        format!("{}/app:1.0.0", registry.host())
    );
    if let Some(server) = cluster.server() {
        let writes: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert_eq!(writes, vec![], "plan sends no write");
    }
}

#[tokio::test]
async fn run_applies_a_push_within_the_interval_and_stops_on_sigterm() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "app", &["1.0.0"]).await;
    // Two releases follow each other: the first rollout must complete, with or without pods.
    deployment("web")
        .image(&format!("{}/app:1.0.0", registry.host()))
        .policy("minor")
        .replicas(0)
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let mut child = Command::new(BIN)
        .args(["run", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "-n",
            &ns,
            "--interval",
            "1s",
            "--insecure-registry",
            &registry.host(),
            "--lease-namespace",
            &ns,
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tagwatch run");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait::until("readyz", Duration::from_secs(20), || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await
    .expect("ready");

    push(&registry, "app", &["1.1.0"]).await;
    let want = format!("{}/app:1.1.0", registry.host());
    wait::until(
        "the deployment to run 1.1.0",
        Duration::from_secs(20),
        || {
            let want = want.clone();
            let cluster = &cluster;
            let ns = ns.clone();
            async move { (image(cluster, &ns, "web").await == want).then_some(()) }
        },
    )
    .await
    .expect("updated");

    // The patch lands in the API server a moment before tagwatch counts it.
    let applied = r#"tagwatch_updates_total{reason="policy",result="applied"} 1"#;
    wait::until("the update to be counted", Duration::from_secs(10), || {
        let http = http.clone();
        let url = format!("{base}/metrics");
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.contains(applied).then_some(())
        }
    })
    .await
    .expect("metric");
    // The rollout tagwatch started was watched to completion and timed.
    wait::until("the rollout timed", Duration::from_secs(10), || {
        let http = http.clone();
        let url = format!("{base}/metrics");
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.contains("tagwatch_rollout_duration_seconds_count 1")
                .then_some(())
        }
    })
    .await
    .expect("rollout duration observed once");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = wait::until("tagwatch to exit", Duration::from_secs(15), || {
        let done = child.try_wait().ok().flatten();
        async move { done }
    })
    .await
    .expect("exit");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let logs = std::fs::read_to_string(dir.path().join("log")).expect("logs");
    let updates: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("image updated"))
        .collect();
    assert_eq!(updates.len(), 1, "each update logged once:\n{logs}");
    assert!(
        updates[0].contains("\"to\":\"") && updates[0].contains("1.1.0"),
        "{}",
        updates[0]
    );
}

#[tokio::test]
async fn resolve_against_the_registry_a_tag_file_and_with_credentials() {
    let registry = Registry::basic("ci", "pw-resolve").await.expect("registry");
    push(
        &registry,
        "app",
        &["1.9.3", "1.10.0", "2.0.0", "1.11.0-rc.1"],
    )
    .await;
    let image = |tag: &str| format!("{}/app:{tag}", registry.host());
    let resolve = |args: Vec<String>| {
        let mut child = Command::new(BIN)
            .arg("resolve")
            .args(&args)
            .args(["--insecure", "--username", "ci", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"pw-resolve\n")
            .expect("password");
        child.wait_with_output().expect("resolve")
    };
    let out = resolve(vec![
        image("1.9.3"),
        "--explain".into(),
        "-o".into(),
        "json".into(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["decision"], "update");
    assert_eq!(json["tag"], "1.10.0");
    assert_eq!(json["new_image"], image("1.10.0"));
    let verdict = |tag: &str| {
        json["explanation"]
            .as_array()
            .expect("explanation")
            .iter()
            .find(|c| c["tag"] == tag)
            .map(|c| c["verdict"].clone())
            .expect("candidate")
    };
    assert_eq!(verdict("2.0.0"), "outside-policy");
    assert_eq!(verdict("1.11.0-rc.1"), "prerelease-channel");

    let out = resolve(vec![image("1.10.0")]);
    assert_eq!(out.status.code(), Some(1), "up to date");
    let out = resolve(vec![image("1.9.3"), "--policy".into(), "sideways".into()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));

    let dir = tempfile::tempdir().expect("tempdir");
    let tags = dir.path().join("tags");
    std::fs::write(&tags, "1.2.3\n1.2.4\n1.3.0\n").expect("tags file");
    let out = Command::new(BIN)
        .args([
            "resolve",
            "reg.example/app:1.2.3",
            "--policy",
            "patch",
            "--tags-file",
        ])
        .arg(&tags)
        .output()
        .expect("resolve");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "update: reg.example/app:1.2.3 → reg.example/app:1.2.4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_its_settings_from_the_config_file_and_flags_win() {
    let cluster = TestCluster::start().await.expect("cluster");
    let registry = Registry::anonymous().await.expect("registry");
    let ns = cluster.namespace.clone();
    push(&registry, "cfg", &["1.0.0", "1.0.1"]).await;
    deployment("from-file")
        .image(&format!("{}/cfg:1.0.0", registry.host()))
        .policy("patch")
        .create(&cluster, &ns)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tagwatch.yaml");
    // Namespace, interval, the plain-HTTP registry and the lease come only from the file; the
    // file asks for text logs but the flag's JSON must win.
    std::fs::write(
        &config,
        format!(
            "namespaces: [{ns}]\ninterval: 1s\nlog: {{format: text}}\nregistries:\n  - host: \"{}\"\n    insecure: true\n    concurrency: 1\nleaderElection:\n  leaseName: from-file\n  leaseNamespace: {ns}\n",
            registry.host()
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let tagwatch = Tagwatch::run(&cluster, &["--config", &config]);
    let want = format!("{}/cfg:1.0.1", registry.host());
    wait::until(
        "the file-configured update",
        Duration::from_secs(30),
        || async { (image(&cluster, &ns, "from-file").await == want).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tagwatch.logs()));
    // The log line follows the write: wait for it rather than race it.
    let updates = wait::until("the update logged", Duration::from_secs(10), || async {
        let updates = tagwatch.log_events("image updated");
        (!updates.is_empty()).then_some(updates)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; JSON logs (the flag won)?\n{}", tagwatch.logs()));
    assert_eq!(
        updates.len(),
        1,
        "JSON logs (the flag won): {}",
        tagwatch.logs()
    );
    assert_eq!(updates[0]["workload"], format!("{ns}/from-file"));
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(cluster.client.clone(), &ns);
    let lease = api
        .get("from-file")
        .await
        .expect("the lease the file named");
    assert!(lease
        .spec
        .and_then(|s| s.holder_identity)
        .is_some_and(|h| !h.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_refuses_start_naming_file_and_field() {
    let cluster = TestCluster::start().await.expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = cluster.kubeconfig(dir.path()).expect("kubeconfig");
    let config = dir.path().join("broken.yaml");
    std::fs::write(
        &config,
        "interval: 30s\nleaderElection:\n  leaseDuration: 5s\n  renewDeadline: 9s\n",
    )
    .expect("config");
    if let Some(server) = cluster.server() {
        server.clear_requests();
    }
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["run", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run tagwatch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("config file"), "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(
        stderr.contains("field `leaderElection.renewDeadline`"),
        "{stderr}"
    );
    assert!(stderr.contains("shorter than leaseDuration"), "{stderr}");
    if let Some(server) = cluster.server() {
        assert!(
            server.requests().is_empty(),
            "refused before touching the cluster: {:?}",
            server.requests()
        );
    }
}
