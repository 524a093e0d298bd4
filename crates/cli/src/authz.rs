//! `leash policy`, `leash approvals`, `leash break-glass`: request-time
//! authorization from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use leash_server::api::dto::{ApprovalView, Minted};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Api, enc};
use crate::commands::{or_dash, print_json, show, table};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Show the policies in force (shipped defaults and the policy directory).
    List,
    /// Add or replace a policy file through the server; it is validated
    /// against the schema first (a bad policy is refused, the old set stays).
    Put {
        /// Name of the policy file (`ops` → `ops.cedar`; a default's name replaces it).
        name: String,
        /// Cedar file to send (`-` for stdin).
        file: PathBuf,
    },
    /// Remove a policy file (a removed default comes back).
    Delete { name: String },
    /// Re-read the policy directory now (the server also watches it).
    Reload,
    /// Evaluate sample requests against policies and check the expected
    /// outcomes (exit 1 if any sample fails). Format: see the README.
    Test {
        /// JSON samples file.
        file: PathBuf,
        /// Test offline against the defaults overlaid with this directory,
        /// instead of the server's active policies.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Test offline against the shipped defaults only.
        #[arg(long, conflicts_with = "dir")]
        defaults: bool,
    },
}

#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// List approval requests, newest first.
    List {
        /// pending, approved, denied or issued.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one request.
    Show { id: i64 },
    /// Approve a request, as its owner or a delegate (owner credential in
    /// LEASH_OWNER_TOKEN or --owner-token).
    Approve {
        id: i64,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "LEASH_OWNER_TOKEN", hide_env_values = true)]
        owner_token: Option<String>,
    },
    /// Deny a request, as its owner or a delegate.
    Deny {
        id: i64,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "LEASH_OWNER_TOKEN", hide_env_values = true)]
        owner_token: Option<String>,
    },
    /// Receive the token of an approved request (once).
    Claim { id: i64 },
}

#[derive(Args)]
pub struct BreakGlassArgs {
    /// List break-glass grants and every use of them instead.
    #[arg(long)]
    pub list: bool,
    #[arg(long, required_unless_present = "list")]
    pub workload: Option<String>,
    /// Scopes (repeat); may be above the workload's ceiling.
    #[arg(long = "scope", required_unless_present = "list")]
    pub scopes: Vec<String>,
    /// What the emergency is (required, recorded and sent to the owner).
    #[arg(long, required_unless_present = "list")]
    pub reason: Option<String>,
    /// Lifetime, at most 1h; the grant is revoked when it ends.
    #[arg(long, default_value = "15m")]
    pub ttl: String,
    /// jwt or opaque.
    #[arg(long, default_value = "jwt")]
    pub format: String,
}

fn approval_text(a: &ApprovalView) {
    println!(
        "approval #{}  {} for workload {}  [{}]",
        a.id, a.kind, a.workload, a.status
    );
    println!("  owner          {}", a.owner);
    if !a.delegates.is_empty() {
        println!("  delegates      {}", a.delegates.join(", "));
    }
    println!("  justification  {}", a.justification);
    if let Some(s) = a.request.get("scopes") {
        println!("  scopes         {s}");
    }
    println!("  requested      {} by {}", a.requested_at, a.requested_by);
    if let Some(by) = &a.decided_by {
        println!(
            "  decided        {} by {} ({})",
            or_dash(a.decided_at.as_deref()),
            by,
            or_dash(a.decision_note.as_deref())
        );
    }
    if let Some(t) = &a.token_id {
        println!("  token          {t}");
    }
    println!("  next           {}", a.next);
}

/// Print a mint answer: a token (201) or a pending approval (202).
pub fn print_mint_answer(v: Value, j: bool) -> Result<()> {
    if v.get("token").is_some() {
        let m: Minted = serde_json::from_value(v)?;
        if j {
            return print_json(&m);
        }
        // the token alone on stdout, so TOKEN=$(leash mint …) works
        println!("{}", m.token);
        eprintln!(
            "minted {} for workload {} (owner {}), scopes [{}], expires {}{}",
            m.id,
            m.workload,
            m.owner,
            m.scopes.join(", "),
            m.expires_at,
            m.run.map(|r| format!(", run {r}")).unwrap_or_default()
        );
        return Ok(());
    }
    let a: ApprovalView = serde_json::from_value(v)?;
    if j {
        return print_json(&a);
    }
    eprintln!("this needs approval: no token yet");
    approval_text(&a);
    Ok(())
}

fn read_file(p: &PathBuf) -> Result<String> {
    if p.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

fn policies_text(v: &Value) {
    println!("directory  {}", v["directory"].as_str().unwrap_or("?"));
    let rows = v["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    vec![
                        s["name"].as_str().unwrap_or("").to_owned(),
                        s["origin"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["source", "origin"], rows);
    let ids: Vec<&str> = v["policies"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("policies in force: {}", ids.join(", "));
}

fn report_text(report: &Value) -> bool {
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let mut failed = 0;
    for r in &results {
        let ok = r["passed"].as_bool().unwrap_or(false);
        failed += usize::from(!ok);
        let decision = if r["decision"]["allow"].as_bool().unwrap_or(false) {
            "allow"
        } else {
            "deny"
        };
        println!(
            "{}  {}  ({decision})",
            if ok { "pass" } else { "FAIL" },
            r["name"].as_str().unwrap_or("?")
        );
        if !ok && let Some(why) = r["failure"].as_str() {
            println!("      {why}");
        }
        if let Some(reason) = r["decision"]["reasons"][0]["message"].as_str() {
            println!("      {reason}");
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    failed == 0
}

pub async fn policy(api: impl Fn() -> Result<Api>, cmd: PolicyCmd, j: bool) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::List => {
            let v: Value = api()?.get("/v1/policies").await?;
            show(j, &v, policies_text)?;
        }
        PolicyCmd::Put { name, file } => {
            let text = read_file(&file)?;
            let v: Value = api()?
                .call_text(Method::PUT, &format!("/v1/policies/{}", enc(&name)), text)
                .await?;
            show(j, &v, |v| {
                println!("policy `{name}` validated and active");
                policies_text(v)
            })?;
        }
        PolicyCmd::Delete { name } => {
            let v: Value = api()?
                .call(
                    Method::DELETE,
                    &format!("/v1/policies/{}", enc(&name)),
                    None,
                )
                .await?;
            show(j, &v, policies_text)?;
        }
        PolicyCmd::Reload => {
            let v: Value = api()?.post("/v1/policies/reload", &json!({})).await?;
            show(j, &v, policies_text)?;
        }
        PolicyCmd::Test {
            file,
            dir,
            defaults,
        } => {
            let samples = read_file(&file)?;
            let report: Value = if dir.is_some() || defaults {
                let set = match &dir {
                    Some(d) => leash_policy::PolicySet::from_dir(d)?,
                    None => leash_policy::PolicySet::defaults()?,
                };
                let r = leash_policy::samples::evaluate_samples(&set, &samples)?;
                serde_json::to_value(&r)?
            } else {
                api()?
                    .call_text(Method::POST, "/v1/policies/test", samples)
                    .await?
            };
            let passed = if j {
                print_json(&report)?;
                report["results"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|r| r["passed"] == true))
            } else {
                report_text(&report)
            };
            return Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approvals(api: &Api, cmd: ApprovalsCmd, j: bool) -> Result<()> {
    let owner_api = |t: Option<String>| -> Result<Api> {
        match t.filter(|t| !t.trim().is_empty()) {
            Some(t) => Ok(api.with_token(t.trim().to_owned())),
            None => bail!(
                "deciding needs the owner's own credential: set LEASH_OWNER_TOKEN or pass --owner-token (create one with `leash owner credential NAME`)"
            ),
        }
    };
    match cmd {
        ApprovalsCmd::List { status, limit } => {
            let mut path = format!("/v1/approvals?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={}", enc(&s)));
            }
            let list: Vec<ApprovalView> = api.get(&path).await?;
            show(j, &list, |list| {
                table(
                    &["id", "kind", "status", "workload", "owner", "justification"],
                    list.iter()
                        .map(|a| {
                            vec![
                                a.id.to_string(),
                                a.kind.clone(),
                                a.status.clone(),
                                a.workload.clone(),
                                a.owner.clone(),
                                a.justification.chars().take(60).collect(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        ApprovalsCmd::Show { id } => {
            let a: ApprovalView = api.get(&format!("/v1/approvals/{id}")).await?;
            show(j, &a, approval_text)
        }
        ApprovalsCmd::Approve {
            id,
            note,
            owner_token,
        } => {
            let a: ApprovalView = owner_api(owner_token)?
                .post(
                    &format!("/v1/approvals/{id}/approve"),
                    &json!({"note": note}),
                )
                .await?;
            show(j, &a, approval_text)
        }
        ApprovalsCmd::Deny {
            id,
            note,
            owner_token,
        } => {
            let a: ApprovalView = owner_api(owner_token)?
                .post(&format!("/v1/approvals/{id}/deny"), &json!({"note": note}))
                .await?;
            show(j, &a, approval_text)
        }
        ApprovalsCmd::Claim { id } => {
            let v: Value = api
                .post(&format!("/v1/approvals/{id}/token"), &json!({}))
                .await?;
            print_mint_answer(v, j)
        }
    }
}

pub async fn break_glass(api: &Api, a: BreakGlassArgs, j: bool) -> Result<()> {
    if a.list {
        let list: Vec<Value> = api.get("/v1/break-glass").await?;
        return show(j, &list, |list| {
            for g in list {
                println!(
                    "{}  workload {}  [{}]  {} → {}",
                    g["id"].as_str().unwrap_or("?"),
                    g["workload"].as_str().unwrap_or("?"),
                    g["status"].as_str().unwrap_or("?"),
                    g["issued_at"].as_str().unwrap_or("?"),
                    g["expires_at"].as_str().unwrap_or("?"),
                );
                println!("  reason  {}", g["reason"].as_str().unwrap_or(""));
                println!("  scopes  {}", g["scopes"]);
                let uses = g["uses"]["totals"].as_array().cloned().unwrap_or_default();
                if uses.is_empty() {
                    println!("  uses    none");
                }
                for u in uses {
                    println!(
                        "  use     {}× {} {} by {}{} ({}), last {}",
                        u["count"],
                        u["action"].as_str().unwrap_or(""),
                        u["resource"].as_str().unwrap_or(""),
                        u["workload"].as_str().unwrap_or(""),
                        match u["tool"].as_str() {
                            Some(t) if !t.is_empty() => format!(" via {t}"),
                            _ => String::new(),
                        },
                        if u["allowed"] == true {
                            "allowed"
                        } else {
                            "denied"
                        },
                        u["last_at"]
                    );
                }
            }
        });
    }
    let body = json!({
        "workload": a.workload, "scopes": a.scopes, "reason": a.reason,
        "ttl": a.ttl, "format": a.format,
    });
    let v: Value = api.post("/v1/break-glass", &body).await?;
    if v.get("token").is_some() && !j {
        eprintln!("BREAK-GLASS grant: audited, the owner is notified, revoked at its TTL");
    }
    print_mint_answer(v, j)
}
