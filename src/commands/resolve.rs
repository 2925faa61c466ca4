//! `tagwatch resolve`: the policy engine on one image, against its registry or a tag list.
//! Exit codes: 0 an update exists, 1 up to date, 2 error.

use std::collections::BTreeSet;
use std::io::Read;
use std::str::FromStr;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{Output, ResolveArgs};
use crate::metrics::Metrics;
use crate::model::alias::Alias;
use crate::model::channels::Channels;
use crate::model::filter::parse_filter;
use crate::model::image::ImageRef;
use crate::model::policy::Policy;
use crate::plan::resolve::{resolve as decide, Decision, Request};
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
}

pub async fn resolve(args: ResolveArgs) -> anyhow::Result<u8> {
    let image = ImageRef::parse(&args.image)?;
    let policy = Policy::from_str(&args.policy)?;
    let channels = Channels::from_str(&args.prerelease)?;
    let filter = args.filter.as_deref().map(parse_filter).transpose()?;
    let track = args.track.as_deref().map(Alias::from_str).transpose()?;
    let tags = match &args.tags_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading tags file {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => list(&args, &image).await?,
    };
    let current = image.tag.as_deref().unwrap_or("");
    let rejected = BTreeSet::new();
    let request = Request::new(current, &policy)
        .channels(&channels)
        .filter(filter.as_ref())
        .track(track)
        .rejected(&rejected)
        .explain(args.explain);
    let decision = decide(&request, &tags);
    let new_image = decision.tag().map(|tag| image.with_tag(tag, None));
    match args.output {
        Output::Json => {
            let report = Report {
                image: &args.image,
                repository: image.repository.to_string(),
                current,
                policy: policy.to_string(),
                new_image: new_image.clone(),
                decision: &decision,
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

async fn list(args: &ResolveArgs, image: &ImageRef) -> anyhow::Result<Vec<String>> {
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
    Ok(client.list_tags(&image.repository, &credentials).await?)
}
