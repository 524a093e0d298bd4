//! Command implementations: each is a thin client of the `/v1` API.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use leash_core::duration::parse_duration;
use leash_core::issuance::TtlCaps;
use leash_server::api::dto::*;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Api, enc, find_token};
use crate::{
    AuditCmd, Cli, ClientCmd, Command, CredentialsCmd, IssuerCmd, KeysCmd, OwnerCmd, RunCmd,
    ServeArgs, TokensCmd, WorkflowCmd, WorkloadCmd,
};

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Print JSON when asked, text otherwise.
pub(crate) fn show<T: Serialize>(json_out: bool, v: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json_out {
        print_json(v)
    } else {
        text(v);
        Ok(())
    }
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

pub(crate) fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

fn read_arg(v: &str) -> Result<String> {
    if v == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        Ok(s.trim().to_owned())
    } else {
        Ok(v.to_owned())
    }
}

fn read_definition(path: &std::path::Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("definition file {} cannot be read", path.display()))?;
    if meta.len() > 900 * 1024 {
        bail!("definition file {} is larger than 900 KiB", path.display());
    }
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "definition file {} cannot be read as UTF-8 text",
            path.display()
        )
    })
}

/// A JWK Set file, parsed as JSON (the server checks the keys).
fn read_jwks(path: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("JWK Set file {} cannot be read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn revoked_line(r: &RevokedView) -> String {
    match r.count {
        0 => "no live tokens to revoke".to_owned(),
        n => format!(
            "revoked {n} token(s) ({} via delegation), audit event #{}",
            r.cascaded,
            r.event.unwrap_or_default()
        ),
    }
}

/// Parse `ENV=DURATION` caps.
fn ttl_caps(list: &[String]) -> Result<TtlCaps> {
    let mut caps = TtlCaps::default();
    for item in list {
        let (env, dur) = item.split_once('=').with_context(|| {
            format!("--ttl-cap `{item}`: write it as ENV=DURATION, e.g. prod=30m")
        })?;
        let secs = parse_duration(dur)?;
        // token expiry times are Unix milliseconds in i64: keep caps far from overflow
        if secs > 366 * 86_400 {
            bail!(
                "--ttl-cap `{item}`: a cap above 366d is not accepted; tokens are meant to be short-lived"
            );
        }
        match env {
            "dev" => caps.dev = secs,
            "stage" => caps.stage = secs,
            "prod" => caps.prod = secs,
            other => bail!("--ttl-cap: unknown environment `{other}`; use dev, stage or prod"),
        }
    }
    Ok(caps)
}

async fn serve(a: ServeArgs) -> Result<ExitCode> {
    let exposure = crate::exposure::settings(&a)?;
    let mut cfg = leash_server::ServerConfig::new(a.data, a.listen);
    cfg.database = a.database;
    let kek_env = std::env::var("LEASH_KEY_ENCRYPTION_KEY").ok();
    cfg.key_encryption_key = match (a.key_encryption_key_file, kek_env) {
        (Some(_), Some(_)) => {
            bail!(
                "give the key-encryption key once: --key-encryption-key-file or LEASH_KEY_ENCRYPTION_KEY, not both"
            )
        }
        (Some(path), None) => Some(leash_server::SecretBytes(std::fs::read(&path).map_err(
            |e| anyhow::anyhow!("--key-encryption-key-file {}: {e}", path.display()),
        )?)),
        (None, Some(text)) => Some(leash_server::SecretBytes(text.into_bytes())),
        (None, None) => None,
    };
    cfg.nats = a
        .nats_url
        .map(|url| leash_server::fanout::NatsSettings { url });
    cfg.max_staleness = std::time::Duration::from_secs(
        parse_duration(&a.max_staleness)
            .map_err(|e| anyhow::anyhow!("--max-staleness: {e}"))?
            .max(1),
    );
    cfg.exposure = exposure;
    cfg.issuer = a.issuer;
    cfg.ttl_caps = ttl_caps(&a.ttl_caps)?;
    cfg.default_audience = a.default_audience;
    cfg.max_delegation_depth = a.max_delegation_depth;
    cfg.jwks_min_refresh = std::time::Duration::from_secs(parse_duration(&a.jwks_min_refresh)?);
    cfg.authz.policy_dir = a.policy_dir;
    for spec in &a.on_violation {
        cfg.authz
            .violations
            .set_from(spec)
            .map_err(|e| anyhow::anyhow!("--on-violation {e}"))?;
    }
    cfg.authz.write_approval = !a.no_write_approval;
    cfg.authz.write_budget = a.write_budget;
    cfg.authz.break_glass_approval = a.break_glass_approval;
    cfg.authz.usage.keep_log = a.usage_log_keep;
    cfg.authz.usage.raw_per_sec = a.usage_raw_per_sec;
    if !(0.0..=1.0).contains(&a.write_max_ratio) {
        bail!("--write-max-ratio is a share between 0 and 1, e.g. 0.2");
    }
    let ms = |what: &str, d: &str| -> Result<i64> {
        let secs = parse_duration(d).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000)
    };
    cfg.review.settings = leash_store::ReviewSettings {
        stale_days: a.stale_days,
        churn_gap_ms: ms("--churn-gap", &a.churn_gap)?,
        churn_threshold_ms: ms("--churn-threshold", &a.churn_threshold)?,
        unused_runs: a.unused_runs.max(1),
    };
    cfg.review.rules = leash_server::review::RuleSettings {
        learn_events: a.learn_events,
    };
    if let Some(url) = a.credential_database {
        let mut c = leash_server::credentials::CredentialSettings::new(url);
        c.public_url = a.credential_host_url;
        c.retry_max = std::time::Duration::from_secs(
            parse_duration(&a.credential_retry_max)
                .map_err(|e| anyhow::anyhow!("--credential-retry-max: {e}"))?
                .max(1),
        );
        cfg.credentials = Some(c);
    }
    cfg.review.removal_min_runs = Some(a.removal_min_runs.max(1));
    cfg.review.write_max_ratio = Some(a.write_max_ratio);
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
    };
    leash_server::serve(cfg, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let j = cli.json;
    let api = || Api::new(&cli.url, find_token(cli.token.clone()));
    match cli.command {
        Command::Serve(a) => return serve(*a).await,
        Command::Scan(a) => {
            // a server is configured when an operator credential is at hand
            let token = find_token(cli.token.clone());
            let api = match token {
                Some(t) if !a.offline => Some(Api::new(&cli.url, Some(t))?),
                _ => None,
            };
            if api.is_none() && !a.offline && !j && a.format == "text" {
                eprintln!(
                    "note: no Leash server configured (LEASH_TOKEN or $LEASH_DATA/operator.token); scanning offline"
                );
            }
            return Ok(crate::scan::run(a, api, j).await);
        }
        Command::Bench(cmd) => return crate::bench::run(cmd, api()?, j).await,
        Command::Owner(cmd) => owner(&api()?, cmd, j).await?,
        Command::Exposures(cmd) => crate::exposure::exposures(&api()?, cmd, j).await?,
        Command::Findings(cmd) => crate::exposure::findings(&api()?, cmd, j).await?,
        Command::Policy(cmd) => return crate::authz::policy(api, cmd, j).await,
        Command::Approvals(cmd) => crate::authz::approvals(&api()?, cmd, j).await?,
        Command::BreakGlass(a) => crate::authz::break_glass(&api()?, a, j).await?,
        Command::External(cmd) => crate::exposure::external(&api()?, cmd, j).await?,
        Command::Import(a) => crate::review::import(&api()?, a, j).await?,
        Command::Usage(cmd) => crate::review::usage(&api()?, cmd, j).await?,
        Command::RemovalTest(a) => crate::review::removal_test(&api()?, a, j).await?,
        Command::Report(a) => crate::review::report(&api()?, a, j).await?,
        Command::Workload(cmd) => workload(&api()?, cmd, j).await?,
        Command::Workflow(cmd) => workflow(&api()?, cmd, j).await?,
        Command::Run(cmd) => run_cmd(&api()?, cmd, j).await?,
        Command::Client(ClientCmd::Add {
            workload,
            jwks,
            no_secret,
            introspect,
        }) => {
            let jwks = jwks.as_deref().map(read_jwks).transpose()?;
            let c: leash_server::api::clients::ClientCreated = api()?
                .post(
                    "/v1/clients",
                    &json!({"workload": workload, "jwks": jwks, "secret": !no_secret, "introspect": introspect}),
                )
                .await?;
            show(j, &c, |c| {
                println!("client_id     {}", c.client_id);
                if let Some(s) = &c.client_secret {
                    println!("client_secret {s}");
                    eprintln!("(shown once: Leash keeps only its SHA-256)");
                }
                println!(
                    "workload      {}  auth: {}",
                    c.workload,
                    c.auth_methods.join(", ")
                );
            })?;
        }
        Command::Issuer(IssuerCmd::Add {
            name,
            issuer,
            jwks_url,
            jwks,
            audience,
        }) => {
            let jwks = jwks.as_deref().map(read_jwks).transpose()?;
            let v: leash_server::api::federation::IssuerView =
                api()?.post("/v1/issuers", &json!({"name": name, "issuer": issuer, "jwks_url": jwks_url, "jwks": jwks, "audience": audience})).await?;
            show(j, &v, |v| {
                println!(
                    "trusted issuer {} ({}), audience {}",
                    v.name, v.issuer, v.audience
                )
            })?;
        }
        Command::Issuer(IssuerCmd::List) => {
            let l: Vec<leash_server::api::federation::IssuerView> =
                api()?.get("/v1/issuers").await?;
            show(j, &l, |l| {
                for i in l {
                    println!(
                        "{} {} aud={} keys={}",
                        i.name,
                        i.issuer,
                        i.audience,
                        i.jwks_url.as_deref().unwrap_or("inline")
                    );
                    for r in &i.rules {
                        let c: Vec<String> =
                            r.claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!("  -> {}  when {}", r.workload, c.join(" "));
                    }
                }
            })?;
        }
        Command::Keys(cmd) => {
            let api = api()?;
            let v: leash_server::api::oauth::KeysView = match cmd {
                KeysCmd::List => api.get("/v1/keys").await?,
                KeysCmd::Rotate => api.call(Method::POST, "/v1/keys/rotate", None).await?,
            };
            show(j, &v, |v| {
                table(
                    &["kid", "active", "created", "retires"],
                    v.keys
                        .iter()
                        .map(|k| {
                            vec![
                                k.kid.clone(),
                                k.active.to_string(),
                                ts(k.created * 1000),
                                k.retires_at
                                    .map(|r| ts(r * 1000))
                                    .unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Command::Client(ClientCmd::List) => {
            let l: Vec<leash_server::api::clients::ClientView> = api()?.get("/v1/clients").await?;
            show(j, &l, |l| {
                table(
                    &["client_id", "workload", "auth", "created"],
                    l.iter()
                        .map(|c| {
                            vec![
                                c.client_id.clone(),
                                c.workload.clone(),
                                c.auth_methods.join(" "),
                                c.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Command::Mint(a) => {
            let body = json!({
                "workload": a.workload, "run": a.run, "scopes": a.scopes, "ttl": a.ttl,
                "audience": a.audience, "justification": a.justification, "format": a.format, "parent": a.parent, "may_act": a.may_act,
            });
            let v: Value = api()?.post("/v1/tokens", &body).await?;
            crate::authz::print_mint_answer(v, j)?;
        }
        Command::Revoke(a) => {
            let t = read_arg(&a.token_or_id)?;
            let r: RevokedView = api()?
                .post(
                    "/v1/revocations",
                    &json!({"token_or_id": t, "reason": a.reason}),
                )
                .await?;
            show(j, &r, |r| {
                if r.count == 0 {
                    println!("nothing revoked: the token was already revoked or expired");
                } else {
                    println!("{}", revoked_line(r));
                }
            })?;
        }
        Command::Explain(a) => {
            let t = read_arg(&a.token_or_id)?;
            if t.starts_with("external:") {
                let e: ExternalExplanation = api()?
                    .post("/v1/explain", &json!({"token_or_id": t}))
                    .await?;
                show(j, &e, print_external_explanation)?;
                return Ok(ExitCode::SUCCESS);
            }
            let e: Explanation = api()?
                .post("/v1/explain", &json!({"token_or_id": t}))
                .await?;
            show(j, &e, print_explanation)?;
        }
        Command::Tokens(TokensCmd::Usage { id }) => {
            let u: Value = api()?
                .get(&format!("/v1/tokens/{}/usage", enc(&id)))
                .await?;
            show(j, &u, |u| {
                let rows = u["totals"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| {
                                vec![
                                    t["count"].to_string(),
                                    t["action"].as_str().unwrap_or("").to_owned(),
                                    t["resource"].as_str().unwrap_or("").to_owned(),
                                    t["tool"].as_str().unwrap_or("").to_owned(),
                                    t["workload"].as_str().unwrap_or("").to_owned(),
                                    if t["allowed"] == true {
                                        "allow"
                                    } else {
                                        "deny"
                                    }
                                    .to_owned(),
                                    ts(t["last_at"].as_i64().unwrap_or_default()),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(
                    &[
                        "count", "action", "resource", "tool", "workload", "decision", "last",
                    ],
                    rows,
                )
            })?;
        }
        Command::Credentials(CredentialsCmd::List {
            status,
            limit,
            after,
        }) => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [("status", status), ("after", after)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let list: Vec<CredentialView> = api()?
                .get(&format!("/v1/credentials?{}", q.join("&")))
                .await?;
            show(j, &list, |l| {
                table(
                    &[
                        "token",
                        "role",
                        "database",
                        "status",
                        "token_status",
                        "attempts",
                        "last_error",
                    ],
                    l.iter()
                        .map(|c| {
                            vec![
                                c.token_id.clone(),
                                c.role.clone(),
                                c.database.clone(),
                                c.status.clone(),
                                c.token_status.clone(),
                                c.attempts.to_string(),
                                c.last_error.clone().unwrap_or("-".into()),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Command::Tokens(TokensCmd::WriteRatio) => {
            let r: Value = api()?.get("/v1/write-ratio").await?;
            show(j, &r, |r| {
                println!(
                    "{} of {} live tokens can write (ratio {:.3}); {} approval request(s) pending",
                    r["active_write"],
                    r["active"],
                    r["ratio"].as_f64().unwrap_or_default(),
                    r["pending_approvals"]
                )
            })?;
        }
        Command::Tokens(TokensCmd::List {
            owner,
            workload,
            run,
            status,
            limit,
            after,
        }) => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [
                ("owner", owner),
                ("workload", workload),
                ("status", status),
                ("after", after),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            if let Some(r) = run {
                q.push(format!("run={r}"));
            }
            let list: Vec<TokenView> = api()?.get(&format!("/v1/tokens?{}", q.join("&"))).await?;
            show(j, &list, |l| {
                table(
                    &[
                        "id", "status", "owner", "workload", "run", "scopes", "expires",
                    ],
                    l.iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.status.clone(),
                                t.owner.clone(),
                                t.workload.clone(),
                                t.run.map(|r| r.to_string()).unwrap_or("-".into()),
                                t.scopes.join(" "),
                                t.expires_at.clone(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Command::Audit(AuditCmd::Verify { data, database }) => {
            let v = match (data, database) {
                (Some(dir), _) => {
                    AuditVerification::from_result(leash_store::verify_audit_offline(&dir).await?)
                }
                (None, Some(url)) => AuditVerification::from_result(
                    leash_store::verify_audit_in_database(&url).await?,
                ),
                (None, None) => api()?.get("/v1/audit/verify").await?,
            };
            show(j, &v, |v| {
                if v.ok {
                    println!(
                        "audit chain OK: {} events, head #{} {}",
                        v.events, v.head_seq, v.head_hash
                    );
                } else {
                    println!("audit chain BROKEN:");
                    for p in &v.problems {
                        println!("  {}", p.message);
                    }
                }
            })?;
            if !v.ok {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Audit(AuditCmd::Tail { lines, follow }) => {
            let api = api()?;
            let mut evs: Vec<EventView> = api
                .get(&format!("/v1/audit/events?limit={}", lines.clamp(1, 1000)))
                .await?;
            loop {
                for e in &evs {
                    if j {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        println!(
                            "#{:<6} {}  {:<18} {:<10} {}  {}",
                            e.seq, e.time, e.kind, e.actor, e.subject, e.data
                        );
                    }
                }
                if !follow {
                    break;
                }
                let after = evs.last().map(|e| e.seq);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                evs = match after {
                    Some(a) => {
                        api.get(&format!("/v1/audit/events?after={a}&limit=1000"))
                            .await?
                    }
                    None => api.get("/v1/audit/events?limit=1000").await?,
                };
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_external_explanation(e: &ExternalExplanation) {
    println!("{}  [{}]  {}", e.id, e.status, e.external.kind);
    match &e.owner {
        Some(o) => println!(
            "  1. owner      {} <{}> ({}, {})",
            o.name, o.email, o.kind, o.status
        ),
        None => println!("  1. owner      NOBODY — name an owner (shadow ownership)"),
    }
    println!(
        "  2. workload   {}",
        if e.workload.is_empty() {
            "-".to_owned()
        } else {
            e.workload.join(", ")
        }
    );
    println!(
        "  3. privileges {}  (issued {}, expires {}, last used {})",
        if e.privileges.scopes.is_empty() {
            "-".to_owned()
        } else {
            e.privileges.scopes.join(" ")
        },
        or_dash(e.privileges.issued_at.as_deref()),
        or_dash(e.privileges.expires_at.as_deref()),
        or_dash(e.privileges.last_used_at.as_deref())
    );
    println!("  4. revoked by {}", e.revocation_triggers.join(", "));
    if let Some(at) = &e.revoked {
        println!("  revoked at {at}");
    }
}

fn print_explanation(e: &Explanation) {
    println!(
        "token      {} ({}, {})",
        e.id,
        e.format,
        e.status.to_uppercase()
    );
    if e.break_glass {
        println!(
            "BREAK-GLASS grant outside normal policy: {}",
            e.justification.as_deref().unwrap_or("(no reason recorded)")
        );
    }
    println!(
        "owner      {} <{}> ({}, {}{})",
        e.owner.name,
        e.owner.email,
        e.owner.kind,
        e.owner.status,
        if e.owner.business_owner {
            ", business owner"
        } else {
            ""
        }
    );
    println!(
        "workload   {} [{}] identity {}",
        e.workload.name,
        e.workload.environment,
        or_dash(e.workload.identity.as_deref())
    );
    if let Some(w) = &e.workflow {
        println!(
            "workflow   {} digest {}",
            w.name,
            &w.digest[..w.digest.len().min(16)]
        );
    }
    if let Some(r) = &e.run {
        println!("run        {} ({})", r.id, r.state);
    }
    println!("scopes     {}", e.privileges.scopes.join(" "));
    if !e.privileges.write_scopes.is_empty() {
        println!(
            "writes     {} — justified: {}",
            e.privileges.write_scopes.join(" "),
            or_dash(e.privileges.justification.as_deref())
        );
    }
    println!("audience   {}", e.privileges.audience.join(" "));
    println!(
        "expires    {} ({}s left)",
        e.privileges.expires_at, e.privileges.expires_in
    );
    println!("revoked by {}", e.revocation_triggers.join(", "));
    if !e.lineage.is_empty() {
        let chain: Vec<String> = e
            .lineage
            .iter()
            .map(|h| format!("{} ({}, {})", h.id, h.workload, h.status))
            .collect();
        println!("delegated  depth {} from {}", e.depth, chain.join(" <- "));
    }
    if let Some(a) = &e.act {
        let mut hops = vec![a.sub.clone()];
        let mut cur = a.act.as_deref();
        while let Some(x) = cur {
            hops.push(x.sub.clone());
            cur = x.act.as_deref();
        }
        println!("acting     {}", hops.join(" on behalf of "));
    }
    if let Some(c) = &e.credential {
        println!(
            "postgres   role {} in database {}{} — {}{}",
            c.role,
            c.database,
            match (&c.host, c.port) {
                (Some(h), Some(p)) => format!(" at {h}:{p}"),
                _ => String::new(),
            },
            c.status,
            match (&c.last_error, c.attempts) {
                (Some(err), n) => format!(" after {n} failed attempt(s): {err}"),
                _ => String::new(),
            }
        );
    }
    if let Some(r) = &e.revoked {
        println!(
            "REVOKED    at {} — {} ({}) by event #{} {} {}",
            r.at,
            r.reason,
            r.trigger,
            r.event.seq,
            r.event.kind.as_deref().unwrap_or("?"),
            r.event.subject.as_deref().unwrap_or("")
        );
    }
}

async fn owner(api: &Api, cmd: OwnerCmd, j: bool) -> Result<()> {
    let one = |o: &OwnerView| {
        println!(
            "{} <{}> {} {}{}",
            o.name,
            o.email,
            o.kind,
            o.status,
            if o.business_owner {
                " (business owner)"
            } else {
                ""
            }
        )
    };
    match cmd {
        OwnerCmd::Add {
            name,
            email,
            kind,
            business_owner,
        } => {
            let o: OwnerView = api.post("/v1/owners", &json!({"name": name, "email": email, "kind": kind, "business_owner": business_owner})).await?;
            show(j, &o, one)
        }
        OwnerCmd::List => {
            let l: Vec<OwnerView> = api.get("/v1/owners").await?;
            show(j, &l, |l| {
                table(
                    &["name", "email", "kind", "status", "business"],
                    l.iter()
                        .map(|o| {
                            vec![
                                o.name.clone(),
                                o.email.clone(),
                                o.kind.clone(),
                                o.status.clone(),
                                o.business_owner.to_string(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        OwnerCmd::Show { name } => {
            let o: OwnerView = api.get(&format!("/v1/owners/{}", enc(&name))).await?;
            show(j, &o, one)
        }
        OwnerCmd::Credential { name } => {
            let c: Value = api
                .post(
                    &format!("/v1/owners/{}/credentials", enc(&name)),
                    &json!({}),
                )
                .await?;
            if j {
                print_json(&c)
            } else {
                // the credential alone on stdout, like a minted token
                println!("{}", c["credential"].as_str().unwrap_or_default());
                eprintln!(
                    "credential for owner {name}: shown once; use it as LEASH_OWNER_TOKEN to approve requests"
                );
                Ok(())
            }
        }
        OwnerCmd::Delegate { name, to } => {
            let _: Value = api
                .post(
                    &format!("/v1/owners/{}/delegates", enc(&name)),
                    &json!({"delegate": to}),
                )
                .await?;
            show(j, &json!({"owner": name, "delegate": to}), |_| {
                println!("{to} may now approve requests for {name}")
            })
        }
        OwnerCmd::Offboard { name } => {
            let r: OwnerOffboarded = api
                .call(
                    Method::POST,
                    &format!("/v1/owners/{}/offboard", enc(&name)),
                    None,
                )
                .await?;
            show(j, &r, |r| {
                println!("offboarded {}: {}", r.owner.name, revoked_line(&r.revoked))
            })
        }
    }
}

async fn workload(api: &Api, cmd: WorkloadCmd, j: bool) -> Result<()> {
    let one = |w: &WorkloadView| {
        println!(
            "{} owner {} [{}] identity {} ceiling [{}]",
            w.name,
            w.owner,
            w.environment,
            or_dash(w.identity.as_deref()),
            w.scope_ceiling.join(", ")
        )
    };
    match cmd {
        WorkloadCmd::Add {
            name,
            owner,
            identity,
            environment,
            ceiling,
        } => {
            let w: WorkloadView = api.post("/v1/workloads", &json!({"name": name, "owner": owner, "identity": identity, "environment": environment, "scope_ceiling": ceiling})).await?;
            show(j, &w, one)
        }
        WorkloadCmd::List => {
            let l: Vec<WorkloadView> = api.get("/v1/workloads").await?;
            show(j, &l, |l| {
                table(
                    &["name", "owner", "env", "identity", "ceiling"],
                    l.iter()
                        .map(|w| {
                            vec![
                                w.name.clone(),
                                w.owner.clone(),
                                w.environment.clone(),
                                or_dash(w.identity.as_deref()),
                                w.scope_ceiling.join(" "),
                            ]
                        })
                        .collect(),
                )
            })
        }
        WorkloadCmd::IdentityRule {
            name,
            issuer,
            claims,
        } => {
            let mut map = serde_json::Map::new();
            for c in claims {
                let (k, v) = c
                    .split_once('=')
                    .with_context(|| format!("--claim `{c}`: write it as CLAIM=GLOB"))?;
                map.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let r: leash_server::api::federation::RuleView = api
                .post(
                    &format!("/v1/workloads/{}/identity-rules", enc(&name)),
                    &json!({"issuer": issuer, "claims": map}),
                )
                .await?;
            show(j, &r, |r| {
                println!(
                    "tokens of issuer {issuer} map to {} when {:?}",
                    r.workload, r.claims
                )
            })
        }
        WorkloadCmd::Show { name } => {
            let w: WorkloadView = api.get(&format!("/v1/workloads/{}", enc(&name))).await?;
            show(j, &w, one)
        }
    }
}

async fn workflow(api: &Api, cmd: WorkflowCmd, j: bool) -> Result<()> {
    let one = |w: &WorkflowView| {
        println!(
            "{} owner {} digest {} tools [{}]",
            w.name,
            w.owner,
            w.digest,
            w.tools.join(", ")
        )
    };
    match cmd {
        WorkflowCmd::Add {
            name,
            owner,
            definition,
            tools,
        } => {
            let def = read_definition(&definition)?;
            let w: WorkflowView = api
                .post(
                    "/v1/workflows",
                    &json!({"name": name, "owner": owner, "definition": def, "tools": tools}),
                )
                .await?;
            show(j, &w, one)
        }
        WorkflowCmd::Update {
            name,
            definition,
            tools,
        } => {
            let def = read_definition(&definition)?;
            let tools = if tools.is_empty() {
                Value::Null
            } else {
                json!(tools)
            };
            let u: WorkflowUpdated = api
                .call(
                    Method::PUT,
                    &format!("/v1/workflows/{}", enc(&name)),
                    Some(&json!({"definition": def, "tools": tools})),
                )
                .await?;
            show(j, &u, |u| {
                println!(
                    "workflow {} now at digest {}: {}",
                    u.workflow.name,
                    u.workflow.digest,
                    revoked_line(&u.revoked)
                )
            })
        }
        WorkflowCmd::List => {
            let l: Vec<WorkflowView> = api.get("/v1/workflows").await?;
            show(j, &l, |l| {
                table(
                    &["name", "owner", "digest", "tools"],
                    l.iter()
                        .map(|w| {
                            vec![
                                w.name.clone(),
                                w.owner.clone(),
                                w.digest[..16.min(w.digest.len())].to_owned(),
                                w.tools.join(" "),
                            ]
                        })
                        .collect(),
                )
            })
        }
        WorkflowCmd::Show { name } => {
            let w: WorkflowView = api.get(&format!("/v1/workflows/{}", enc(&name))).await?;
            show(j, &w, one)
        }
    }
}

async fn run_cmd(api: &Api, cmd: RunCmd, j: bool) -> Result<()> {
    let one = |r: &RunView| {
        println!(
            "run {} of {} by {}: {} (started {}{})",
            r.id,
            r.workflow,
            r.workload,
            r.state,
            r.started_at,
            r.ended_at
                .as_ref()
                .map(|e| format!(", ended {e}"))
                .unwrap_or_default()
        )
    };
    match cmd {
        RunCmd::Start { workflow, workload } => {
            let r: RunView = api
                .post(
                    "/v1/runs",
                    &json!({"workflow": workflow, "workload": workload}),
                )
                .await?;
            if j {
                print_json(&r)
            } else {
                // the id alone on stdout, so RUN=$(leash run start …) works
                println!("{}", r.id);
                eprintln!("started run {} of {} by {}", r.id, r.workflow, r.workload);
                Ok(())
            }
        }
        RunCmd::End { run, status } => {
            let r: RunEnded = api
                .post(&format!("/v1/runs/{run}/end"), &json!({"status": status}))
                .await?;
            show(j, &r, |r| {
                println!(
                    "run {} {}: {}",
                    r.run.id,
                    r.run.state,
                    revoked_line(&r.revoked)
                )
            })
        }
        RunCmd::List { workflow, limit } => {
            let mut path = format!("/v1/runs?limit={limit}");
            if let Some(w) = workflow {
                path.push_str(&format!("&workflow={}", enc(&w)));
            }
            let l: Vec<RunView> = api.get(&path).await?;
            show(j, &l, |l| {
                table(
                    &["id", "workflow", "workload", "state", "started", "ended"],
                    l.iter()
                        .map(|r| {
                            vec![
                                r.id.to_string(),
                                r.workflow.clone(),
                                r.workload.clone(),
                                r.state.clone(),
                                r.started_at.clone(),
                                or_dash(r.ended_at.as_deref()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        RunCmd::Show { run } => {
            let r: RunView = api.get(&format!("/v1/runs/{run}")).await?;
            show(j, &r, one)
        }
    }
}

/// Is stderr a terminal (for progress bars)?
pub fn interactive(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}
