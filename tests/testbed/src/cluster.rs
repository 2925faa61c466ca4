//! A Kubernetes cluster for e2e tests, wherever it runs: the in-process [`ApiServer`] by default,
//! or the real cluster named by `TAGWATCH_E2E_KUBECONFIG`. Each `TestCluster` works in a fresh,
//! randomly named namespace.
//!
//! On a real cluster the namespaces are deleted when the `TestCluster` is dropped. Cleanup is
//! blocking, on its own thread and runtime: `Drop` cannot await, and a spawned task would die with
//! the test's runtime before the DELETE is sent, leaking namespaces.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::Rng;

use crate::apiserver::ApiServer;

/// The environment variable naming a real cluster's kubeconfig.
pub const KUBECONFIG_ENV: &str = "TAGWATCH_E2E_KUBECONFIG";

/// Set (to anything) when the real cluster can pull and run the test images, so tests that
/// need Ready pods and completed rollouts run there too.
pub const RUNS_IMAGES_ENV: &str = "TAGWATCH_E2E_RUNS_IMAGES";

pub struct TestCluster {
    pub client: Client,
    pub namespace: String,
    /// `None` on a real cluster: tests skip request-log assertions there.
    pub server: Option<ApiServer>,
    /// The kubeconfig of the real cluster, when there is one.
    kubeconfig: Option<PathBuf>,
    extra_namespaces: Mutex<Vec<String>>,
}

impl TestCluster {
    pub async fn start() -> anyhow::Result<TestCluster> {
        let namespace = format!("tw-{}", random_name(8));
        match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                let client = client_from(&path).await?;
                create_namespace(&client, &namespace).await?;
                Ok(TestCluster {
                    client,
                    namespace,
                    server: None,
                    kubeconfig: Some(path),
                    extra_namespaces: Mutex::new(Vec::new()),
                })
            }
            None => {
                let server = ApiServer::start().await?;
                // Seeded directly, so the request log starts empty for the test.
                server.put(&namespace_object(&namespace))?;
                Ok(TestCluster {
                    client: server.client()?,
                    namespace,
                    server: Some(server),
                    kubeconfig: None,
                    extra_namespaces: Mutex::new(Vec::new()),
                })
            }
        }
    }

    /// Creates another fresh namespace, `<namespace>-<suffix>`, cleaned up with this cluster.
    pub async fn extra_namespace(&self, suffix: &str) -> anyhow::Result<String> {
        let name = format!("{}-{suffix}", self.namespace);
        match &self.server {
            Some(server) => {
                server.put(&namespace_object(&name))?;
            }
            None => create_namespace(&self.client, &name).await?,
        }
        self.extra_namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
        Ok(name)
    }

    /// Writes (or copies) a kubeconfig for subprocesses into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        match (&self.server, &self.kubeconfig) {
            (Some(server), _) => server.write_kubeconfig(&path)?,
            (None, Some(source)) => {
                std::fs::copy(source, &path)?;
            }
            (None, None) => anyhow::bail!("a TestCluster has either a server or a kubeconfig"),
        }
        Ok(path)
    }

    /// A kubeconfig authenticating as `user` (`kubeconfig-<user>` in `dir`), for the CLI run as
    /// different people. Only the test bed can mint identities: `None` on a real cluster.
    pub fn kubeconfig_as(&self, dir: &Path, user: &str) -> anyhow::Result<Option<PathBuf>> {
        let Some(server) = &self.server else {
            return Ok(None);
        };
        let path = dir.join(format!("kubeconfig-{user}"));
        server.write_kubeconfig_as(&path, Some(user))?;
        Ok(Some(path))
    }

    /// Makes the test images run: on the test bed every image's pods become Ready from now on;
    /// on a real cluster, true only when [`RUNS_IMAGES_ENV`] says they can. Use it through
    /// [`require_running_images!`](crate::require_running_images!).
    pub fn run_images(&self) -> bool {
        match &self.server {
            Some(server) => {
                server.set_default_image_health(crate::apiserver::ImageHealth::Ready);
                true
            }
            None => std::env::var_os(RUNS_IMAGES_ENV).is_some(),
        }
    }

    /// The in-process server, or `None` on a real cluster.
    pub fn server(&self) -> Option<&ApiServer> {
        self.server.as_ref()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let Some(kubeconfig) = self.kubeconfig.clone() else {
            return;
        };
        let mut doomed = std::mem::take(
            &mut *self
                .extra_namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        doomed.push(self.namespace.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = client_from(&kubeconfig).await?;
                let namespaces: Api<Namespace> = Api::all(client);
                for name in doomed {
                    if let Err(e) = namespaces.delete(&name, &DeleteParams::default()).await {
                        eprintln!("could not delete test namespace {name}: {e}");
                    }
                }
                anyhow::Ok(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test namespace cleanup failed: {e}"),
            Err(_) => eprintln!("test namespace cleanup panicked"),
        }
    }
}

async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &namespace_object(name))
        .await?;
    Ok(())
}

fn namespace_object(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn random_name(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
