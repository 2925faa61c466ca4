//! `tagwatch resolve`: the policy engine on one image, against its registry or a tag list.
//! Exit codes: 0 an update exists, 1 up to date, 2 error.

use std::collections::BTreeSet;
use std::io::Read;
use std::str::FromStr;

use anyhow::Context as _;
use serde::Serialize;

use crate::act::verify::Verification;
use crate::cli::{Output, ResolveArgs};
use crate::metrics::Metrics;
use crate::model::alias::Alias;
use crate::model::channels::Channels;
use crate::model::filter::parse_filter;
use crate::model::gates::{parse_min_age, GateSpec, Platforms};
use crate::model::image::ImageRef;
use crate::model::policy::Policy;
use crate::model::verify::{Identity, KeySource, KeylessPolicy, Policies, Policy as VerifyPolicy};
use crate::plan::gates::{FactsByTag, FirstSeen};
use crate::plan::resolve::{resolve as decide, Decision, Request};
use crate::plan::update::{choose_gated, Candidate, GateInputs, GateReport};
use crate::registry::fanout::Fanout;
use crate::registry::{ClientOptions, Credentials, RegistryClient, Secret};

pub const EXIT_UPDATE: u8 = 0;
pub const EXIT_UP_TO_DATE: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

#[derive(Serialize)]
struct Report<'a> {
    image: &'a str,
    repository: String,
    current: &'a str,
    policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_image: Option<String>,
    #[serde(flatten)]
    decision: &'a Decision,
    /// Candidates a release gate held back, newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gated: Vec<Gated>,
}

#[derive(Serialize)]
struct Gated {
    tag: String,
    gate: &'static str,
    result: &'static str,
    reason: String,
}

pub async fn resolve(args: ResolveArgs) -> anyhow::Result<u8> {
    let image = ImageRef::parse(&args.image)?;
    let policy = Policy::from_str(&args.policy)?;
    let channels = Channels::from_str(&args.prerelease)?;
    let filter = args.filter.as_deref().map(parse_filter).transpose()?;
    let track = args.track.as_deref().map(Alias::from_str).transpose()?;
    let verification = cli_policy(&args)?;
    let spec = GateSpec {
        verify: if verification.policies.is_empty() {
            BTreeSet::new()
        } else {
            BTreeSet::from([CLI_POLICY.to_string()])
        },
        platforms: args
            .platforms
            .as_deref()
            .map(Platforms::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--platforms: {e}"))?,
        min_age: match args.min_age.as_deref() {
            Some(text) => parse_min_age(text).map_err(|e| anyhow::anyhow!("--min-age: {e}"))?,
            None => None,
        },
    };
    if spec.wants_nodes() {
        anyhow::bail!("--platforms auto needs a cluster's Nodes: list the platforms instead");
    }
    if !spec.is_empty() && args.tags_file.is_some() {
        anyhow::bail!(
            "--platforms, --min-age and signature checks read each candidate from the registry: drop --tags-file"
        );
    }
    // One connection (the password is read from standard input once).
    let mut connection = None;
    let tags = match &args.tags_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading tags file {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => {
            let (client, credentials) = connect(&args, &image)?;
            let tags = client.list_tags(&image.repository, &credentials).await?;
            connection = Some((client, credentials));
            tags
        }
    };
    let gated_digest;
    let current = image.tag.as_deref().unwrap_or("");
    let rejected = BTreeSet::new();
    let request = Request::new(current, &policy)
        .channels(&channels)
        .filter(filter.as_ref())
        .track(track)
        .rejected(&rejected)
        .explain(args.explain);
    let mut report = GateReport::default();
    let decision = if spec.is_empty() {
        gated_digest = None;
        decide(&request, &tags)
    } else {
        let (client, credentials) = connection
            .take()
            .ok_or_else(|| anyhow::anyhow!("release gates need the registry"))?;
        let fanout = Fanout::new(client, 4, Default::default());
        let reads = Reads {
            fanout: &fanout,
            verification: &verification,
            credentials: &credentials,
        };
        let (decision, digest) = gate(&reads, &image, &spec, request, &tags, &mut report).await;
        gated_digest = digest;
        decision
    };
    let new_image = decision
        .tag()
        .map(|tag| image.with_tag(tag, gated_digest.as_deref()));
    let gated: Vec<Gated> = report
        .judged
        .iter()
        .filter(|j| j.result != crate::plan::gates::GateResult::Passed)
        .map(|j| Gated {
            tag: j.tag.clone(),
            gate: j.gate.label(),
            result: j.result.label(),
            reason: j.reason.clone(),
        })
        .collect();
    match args.output {
        Output::Json => {
            let report = Report {
                image: &args.image,
                repository: image.repository.to_string(),
                current,
                policy: policy.to_string(),
                new_image: new_image.clone(),
                decision: &decision,
                gated,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Table => {
            match (&decision, &new_image) {
                (Decision::Update { .. }, Some(new)) => println!("update: {} → {new}", args.image),
                (Decision::UpToDate { .. }, _) => println!("up to date: {}", args.image),
                (Decision::Skip { reason }, _) => println!("skip: {reason}"),
                _ => {}
            }
            for candidate in decision.explanation() {
                println!("  {:<24} {}", candidate.tag, candidate.verdict);
            }
            for held in &gated {
                println!(
                    "  gated: {} held back by {} ({}): {}",
                    held.tag, held.gate, held.result, held.reason
                );
            }
        }
    }
    Ok(match decision {
        Decision::Update { .. } => EXIT_UPDATE,
        Decision::UpToDate { .. } => EXIT_UP_TO_DATE,
        Decision::Skip { reason } => {
            eprintln!("tagwatch resolve: {reason}");
            EXIT_ERROR
        }
    })
}

/// The same walk `tagwatch run` makes: newest candidate first, facts read until one passes.
/// Where the gates read from.
struct Reads<'a> {
    fanout: &'a Fanout,
    verification: &'a Verification,
    credentials: &'a Credentials,
}

async fn gate(
    reads: &Reads<'_>,
    image: &ImageRef,
    spec: &GateSpec,
    request: Request<'_>,
    tags: &[String],
    report: &mut GateReport,
) -> (Decision, Option<String>) {
    let repository = &image.repository;
    // No listing history: every tag counts as known forever, so `created` alone decides.
    let mut first_seen = FirstSeen::default();
    first_seen.listed(repository, tags, k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let mut facts = FactsByTag::new();
    let candidate = Candidate {
        container: "image",
        repository,
        spec,
    };
    loop {
        let inputs = GateInputs {
            facts: std::sync::Arc::new(facts.clone()),
            first_seen: std::sync::Arc::new(first_seen.clone()),
            nodes: None,
            now: k8s_openapi::jiff::Timestamp::now(),
        };
        let mut attempt = GateReport::default();
        let (decision, digest) = choose_gated(candidate, request, tags, &inputs, &mut attempt);
        if attempt.reads.is_empty() {
            *report = attempt;
            return (decision, digest);
        }
        for (repo, tag) in attempt.reads {
            let Reads {
                fanout,
                verification,
                credentials,
            } = *reads;
            let mut read = crate::registry::facts::read(fanout, &repo, &tag, credentials).await;
            if let Ok(facts) = &mut read {
                // Fail closed: an image that does not say when it was built is as young as can be.
                facts.created = facts.created.or(Some(k8s_openapi::jiff::Timestamp::now()));
                facts.signatures = crate::act::verify::check(
                    None,
                    verification,
                    fanout,
                    &repo,
                    &facts.digest,
                    &spec.verify,
                    credentials,
                )
                .await;
            }
            facts.insert((repo, tag), read);
        }
    }
}

/// The name `resolve` gives the policy its flags describe.
const CLI_POLICY: &str = "command-line";

/// The verification policy the flags describe (none without `--verify-key` or a certificate
/// identity).
fn cli_policy(args: &ResolveArgs) -> anyhow::Result<Verification> {
    let keyless = match (
        &args.certificate_identity,
        &args.certificate_identity_regexp,
    ) {
        (None, None) => {
            if args.certificate_oidc_issuer.is_some()
                || args.certificate_oidc_issuer_regexp.is_some()
                || args.trusted_root.is_some()
            {
                anyhow::bail!("keyless verification needs --certificate-identity[-regexp]");
            }
            None
        }
        (subject, subject_regexp) => {
            let identity = Identity::new(
                subject.as_deref(),
                subject_regexp.as_deref(),
                args.certificate_oidc_issuer.as_deref(),
                args.certificate_oidc_issuer_regexp.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("keyless verification: {e}"))?;
            Some(KeylessPolicy {
                identities: vec![identity],
                trusted_root: args.trusted_root.clone(),
                tlog_required: !args.insecure_ignore_tlog,
            })
        }
    };
    if args.verify_keys.is_empty() && keyless.is_none() {
        return Ok(Verification::default());
    }
    let policy = VerifyPolicy {
        name: CLI_POLICY.into(),
        repositories: Vec::new(),
        keys: args
            .verify_keys
            .iter()
            .cloned()
            .map(KeySource::File)
            .collect(),
        keyless,
    };
    Ok(Verification {
        policies: Policies::from_policies([policy]),
        namespace: None,
        aliases: Default::default(),
    })
}

fn connect(args: &ResolveArgs, image: &ImageRef) -> anyhow::Result<(RegistryClient, Credentials)> {
    let credentials = match &args.username {
        Some(username) => {
            let password = if args.password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the password from standard input")?;
                text.trim_end_matches(['\n', '\r']).to_string()
            } else {
                anyhow::bail!("--username needs --password-stdin");
            };
            Credentials::Basic {
                username: username.clone(),
                password: Secret::new(password),
            }
        }
        None => Credentials::Anonymous,
    };
    let insecure = if args.insecure {
        vec![image.repository.registry.clone()]
    } else {
        Vec::new()
    };
    let client = RegistryClient::new(
        ClientOptions {
            insecure_registries: insecure,
            ..ClientOptions::default()
        },
        Metrics::unregistered()?,
    )?;
    Ok((client, credentials))
}
