//! `leash exposures`, `leash findings`, `leash external`, and the exposure
//! settings of `leash serve`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leash_server::api::exposures::{ExposureView, ExternalView, FindingView};
use leash_server::{ExposureSettings, SecretBytes};
use serde_json::json;

use crate::ServeArgs;
use crate::client::{Api, enc};
use crate::commands::{or_dash, show, table};

#[derive(Subcommand)]
pub enum ExposuresCmd {
    /// Exposures, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only ids below this one (paging).
        #[arg(long)]
        before: Option<i64>,
    },
    /// One exposure with its blast radius.
    Show { id: i64 },
}

#[derive(Subcommand)]
pub enum FindingsCmd {
    /// Findings, newest first.
    List {
        /// open, acknowledged or resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        before: Option<i64>,
    },
    Show {
        id: i64,
    },
    /// Acknowledge a finding (someone is on it).
    Ack {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Resolve a finding.
    Resolve {
        id: i64,
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Subcommand)]
pub enum ExternalCmd {
    /// Track a third-party credential. Only its SHA-256 is kept.
    Add {
        name: String,
        /// Provider and type, e.g. github-pat (a scanner rule id matches best).
        #[arg(long)]
        kind: String,
        /// Owner name (omit if nobody owns it yet: it will show as unowned).
        #[arg(long)]
        owner: Option<String>,
        /// Hex SHA-256 of the secret.
        #[arg(
            long,
            conflicts_with = "secret_stdin",
            required_unless_present = "secret_stdin"
        )]
        fingerprint: Option<String>,
        /// Read the secret from stdin and send it to be hashed (it is never stored).
        #[arg(long)]
        secret_stdin: bool,
        /// Workloads that use it (repeat).
        #[arg(long = "workload")]
        workloads: Vec<String>,
        /// Workflows that use it (repeat).
        #[arg(long = "workflow")]
        workflows: Vec<String>,
        /// Its privileges as the provider names them (repeat).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Where it is kept (vault path, CI secret name…).
        #[arg(long)]
        stored_in: Option<String>,
        /// Revocation connector to call when it leaks (see leash serve --connector).
        #[arg(long)]
        connector: Option<String>,
    },
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        after: Option<i64>,
    },
    Show {
        id: i64,
    },
}

fn read_secret_file(flag: &str, path: &Path) -> Result<SecretBytes> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {} cannot be read", path.display()))?;
    let s = text.trim();
    if s.is_empty() {
        bail!("{flag} {} is empty", path.display());
    }
    Ok(SecretBytes(s.as_bytes().to_vec()))
}

/// The exposure settings of `leash serve`.
pub fn settings(a: &ServeArgs) -> Result<ExposureSettings> {
    let mut s = ExposureSettings {
        notify_url: a.notify_url.clone(),
        ..ExposureSettings::default()
    };
    if let Some(p) = &a.slack_signing_secret_file {
        s.slack_signing_secret = Some(read_secret_file("--slack-signing-secret-file", p)?);
    }
    if let Some(p) = &a.jira_webhook_secret_file {
        s.jira_webhook_secret = Some(read_secret_file("--jira-webhook-secret-file", p)?);
    }
    if let Some(p) = &a.webhook_secret_file {
        s.webhook_secret = Some(read_secret_file("--webhook-secret-file", p)?);
    }
    if let Some(p) = &a.github_keys {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("--github-keys {} cannot be read", p.display()))?;
        s.github_keys = leash_server::api::exposures::parse_github_keys(&text)
            .map_err(|e| anyhow::anyhow!("--github-keys {}: {e}", p.display()))?;
    }
    for c in &a.connectors {
        let (name, url) = c
            .split_once('=')
            .with_context(|| format!("--connector `{c}`: write it as NAME=URL"))?;
        s.connectors.push((name.to_owned(), url.to_owned()));
    }
    if let Some(p) = &a.scan_rules {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("--scan-rules {} cannot be read", p.display()))?;
        s.extra_rules = leash_scan::gitleaks::parse_rules(&text)
            .map_err(|e| anyhow::anyhow!("--scan-rules {}: {e}", p.display()))?
            .into_rules();
    }
    Ok(s)
}

pub fn exposure_text(e: &ExposureView) {
    let what = match (&e.token, &e.external) {
        (Some(t), _) => format!("Leash token {t}"),
        (None, Some(x)) => format!("external token {x}"),
        (None, None) => "untracked secret".into(),
    };
    println!("exposure #{}  {} {}  {}", e.id, e.detector, e.excerpt, what);
    println!("  seen       {} at {}", e.source, e.location);
    println!(
        "  action     {} ({} token(s) revoked)",
        e.action, e.revoked_count
    );
    println!("  owner      {}", or_dash(e.owner.as_deref()));
    if !e.blast_radius.workloads.is_empty() || !e.blast_radius.workflows.is_empty() {
        println!(
            "  used by    workloads: {}; workflows: {}",
            e.blast_radius.workloads.join(", "),
            e.blast_radius.workflows.join(", ")
        );
    }
    match e.detection_to_revocation_ms {
        Some(ms) => println!("  detected   {} → revoked in {ms} ms", e.detected_at),
        None => println!("  detected   {}", e.detected_at),
    }
    if let Some(f) = e.finding {
        println!("  finding    #{f}");
    }
}

pub async fn exposures(api: &Api, cmd: ExposuresCmd, j: bool) -> Result<()> {
    match cmd {
        ExposuresCmd::List { limit, before } => {
            let mut path = format!("/v1/exposures?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let list: Vec<ExposureView> = api.get(&path).await?;
            show(j, &list, |list| {
                table(
                    &[
                        "id", "detected", "source", "location", "detector", "action", "owner",
                    ],
                    list.iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.detected_at.clone(),
                                e.source.clone(),
                                e.location.clone(),
                                e.detector.clone(),
                                e.action.clone(),
                                or_dash(e.owner.as_deref()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ExposuresCmd::Show { id } => {
            let e: ExposureView = api.get(&format!("/v1/exposures/{id}")).await?;
            show(j, &e, exposure_text)
        }
    }
}

fn finding_text(f: &FindingView) {
    println!(
        "finding #{}  {} {}  [{}]",
        f.id, f.severity, f.kind, f.status
    );
    println!("  subject  {}", f.subject);
    println!("  owner    {}", or_dash(f.owner.as_deref()));
    println!("  created  {}", f.created_at);
    println!("  {}", f.summary);
    if f.evidence.as_object().is_some_and(|o| !o.is_empty()) {
        println!(
            "  evidence {}",
            serde_json::to_string_pretty(&f.evidence)
                .unwrap_or_default()
                .replace('\n', "\n  ")
        );
    }
}

pub async fn findings(api: &Api, cmd: FindingsCmd, j: bool) -> Result<()> {
    let set = |id: i64, status: &str, note: String| {
        let path = format!("/v1/findings/{id}/status");
        let body = json!({"status": status, "note": note});
        async move { api.post::<FindingView>(&path, &body).await }
    };
    match cmd {
        FindingsCmd::List {
            status,
            limit,
            before,
        } => {
            let mut path = format!("/v1/findings?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={}", enc(&s)));
            }
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let list: Vec<FindingView> = api.get(&path).await?;
            show(j, &list, |list| {
                table(
                    &["id", "severity", "kind", "status", "owner", "summary"],
                    list.iter()
                        .map(|f| {
                            vec![
                                f.id.to_string(),
                                f.severity.clone(),
                                f.kind.clone(),
                                f.status.clone(),
                                or_dash(f.owner.as_deref()),
                                f.summary.chars().take(90).collect(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        FindingsCmd::Show { id } => {
            let f: FindingView = api.get(&format!("/v1/findings/{id}")).await?;
            show(j, &f, finding_text)
        }
        FindingsCmd::Ack { id, note } => {
            show(j, &set(id, "acknowledged", note).await?, finding_text)
        }
        FindingsCmd::Resolve { id, note } => {
            show(j, &set(id, "resolved", note).await?, finding_text)
        }
    }
}

fn external_text(x: &ExternalView) {
    println!(
        "external #{}  {} ({})  [{}]",
        x.id, x.name, x.kind, x.status
    );
    println!("  owner        {}", or_dash(x.owner.as_deref()));
    println!("  fingerprint  {}", x.fingerprint);
    println!("  workloads    {}", x.blast_radius.workloads.join(", "));
    println!("  workflows    {}", x.blast_radius.workflows.join(", "));
    println!("  stored in    {}", or_dash(x.stored_in.as_deref()));
    println!("  connector    {}", or_dash(x.connector.as_deref()));
}

pub async fn external(api: &Api, cmd: ExternalCmd, j: bool) -> Result<()> {
    match cmd {
        ExternalCmd::Add {
            name,
            kind,
            owner,
            fingerprint,
            secret_stdin,
            workloads,
            workflows,
            scopes,
            stored_in,
            connector,
        } => {
            let secret = if secret_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the secret from stdin")?;
                let s = s.trim().to_owned();
                if s.is_empty() {
                    bail!("--secret-stdin: stdin was empty");
                }
                Some(s)
            } else {
                None
            };
            let x: ExternalView = api
                .post(
                    "/v1/external-tokens",
                    &json!({
                        "name": name, "kind": kind, "owner": owner, "fingerprint": fingerprint,
                        "secret": secret, "workloads": workloads, "workflows": workflows,
                        "scopes": scopes, "stored_in": stored_in, "connector": connector,
                    }),
                )
                .await?;
            show(j, &x, external_text)
        }
        ExternalCmd::List { limit, after } => {
            let mut path = format!("/v1/external-tokens?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let list: Vec<ExternalView> = api.get(&path).await?;
            show(j, &list, |list| {
                table(
                    &["id", "name", "kind", "owner", "status", "workloads"],
                    list.iter()
                        .map(|x| {
                            vec![
                                x.id.to_string(),
                                x.name.clone(),
                                x.kind.clone(),
                                or_dash(x.owner.as_deref()),
                                x.status.clone(),
                                x.blast_radius.workloads.join(","),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ExternalCmd::Show { id } => {
            let x: ExternalView = api.get(&format!("/v1/external-tokens/{id}")).await?;
            show(j, &x, external_text)
        }
    }
}
