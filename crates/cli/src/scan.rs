//! `leash scan PATH… | -`: find secrets in files, stdin or git history;
//! report Leash tokens to the server (which revokes them) and third-party
//! secrets by fingerprint (which finds their owner), unless `--offline`.
//!
//! Exit codes: 0 nothing found, 1 secrets found, 2 the scan or the report
//! to the server failed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leash_scan::{FindingKind, Scanner};
use leash_scan_sources::{
    LocatedFinding, Options, Progress, Report, Source, SourceScanner, Stage, report,
};
use leash_server::api::exposures::{ExposureView, ReportResult};
use serde_json::{Value, json};

use crate::client::Api;

/// Third-party findings per report to the server.
const REPORT_BATCH: usize = 1000;

#[derive(Args)]
pub struct ScanArgs {
    /// Files or directories to scan (`-` reads stdin); with --git, repositories. Default: `.`.
    pub paths: Vec<PathBuf>,
    /// Scan the full git history of each PATH: every blob reachable from any ref, once,
    /// reported with the commit that introduced it.
    #[arg(long)]
    pub git: bool,
    /// Also scan files that .gitignore / .ignore exclude.
    #[arg(long)]
    pub no_ignore: bool,
    /// text, json or sarif (SARIF 2.1.0). `--json` is `--format json`.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Never contact a Leash server: no revocation, no inventory match.
    #[arg(long)]
    pub offline: bool,
    /// Extra rules in gitleaks TOML format (a rule with a built-in id replaces it).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// A JWK Set file (the server's /.well-known/jwks.json) to recognise Leash JWTs offline.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// Exposure source reported to the server (default: code for files, git with --git, log for stdin).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Sarif,
}

/// indicatif progress on a terminal; nothing when piped or machine output.
struct Bar {
    bar: ProgressBar,
    bytes: u64,
    items: u64,
}

impl Bar {
    fn new(visible: bool) -> Bar {
        let bar = if visible {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        Bar {
            bar,
            bytes: 0,
            items: 0,
        }
    }
    fn refresh(&self) {
        self.bar.set_message(format!(
            "{} item(s), {:.1} MB",
            self.items,
            self.bytes as f64 / 1e6
        ));
    }
}

impl Progress for Bar {
    fn stage(&mut self, stage: Stage) {
        self.bar.set_prefix(match stage {
            Stage::Files => "scanning files",
            Stage::Stdin => "scanning stdin",
            Stage::ListingCommits => "listing commits",
            Stage::ScanningCommits => "scanning history",
        });
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }
    fn total_items(&mut self, items: u64) {
        self.bar.set_length(items);
        self.bar.set_position(0);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} commits {msg} ({eta})")
        {
            self.bar.set_style(style.progress_chars("=> "));
        }
    }
    fn bytes_scanned(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.bytes % (1 << 22) < bytes {
            self.refresh();
        }
    }
    fn item_done(&mut self, _item: &str) {
        self.items += 1;
        self.bar.inc(1);
        if self.items.is_multiple_of(64) {
            self.refresh();
        }
    }
}

/// Ed25519 public keys of the server's JWKS, by `kid`.
async fn fetch_jwks(api: &Api) -> Result<HashMap<String, Vec<u8>>> {
    let url = format!("{}/.well-known/jwks.json", api.base());
    let v: Value = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot fetch {url}; start the server or scan with --offline"))?
        .json()
        .await
        .with_context(|| format!("{url} did not answer a JWK Set"))?;
    Ok(ed25519_keys(&v))
}

/// The Ed25519 keys of a JWK Set, by `kid`.
fn ed25519_keys(v: &Value) -> HashMap<String, Vec<u8>> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    v["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter_map(|k| {
            Some((
                k["kid"].as_str()?.to_owned(),
                b64.decode(k["x"].as_str()?).ok()?,
            ))
        })
        .collect()
}

/// Is this JWT signed by one of the server's keys (`kid` known, signature valid)?
fn is_leash_jwt(keys: &HashMap<String, Vec<u8>>, token: &str) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(header) = b64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return false;
    };
    let (Some(kid), Ok(sig)) = (header["kid"].as_str(), b64.decode(s)) else {
        return false;
    };
    let Some(key) = keys.get(kid) else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .is_ok()
}

fn location_text(l: &leash_scan_sources::Location) -> String {
    match &l.commit {
        Some(c) => format!("{}:{}@{}", l.path, l.line, &c.id[..c.id.len().min(12)]),
        None => format!("{}:{}", l.path, l.line),
    }
}

fn default_source(l: &leash_scan_sources::Location) -> &'static str {
    match l.source {
        Source::File => "code",
        Source::Git => "git",
        Source::Stdin => "log",
    }
}

/// Report findings: each Leash token as text for the server to verify and
/// revoke; third-party secrets by fingerprint only.
async fn report_to_server(
    api: &Api,
    findings: &[LocatedFinding],
    source: Option<&str>,
) -> Result<Vec<ExposureView>> {
    let mut out = Vec::new();
    let mut third: Vec<(&str, Value)> = Vec::new();
    for f in findings {
        let src = source.unwrap_or_else(|| default_source(&f.location));
        let location = location_text(&f.location);
        match f.finding.kind {
            FindingKind::LeashOpaque | FindingKind::LeashJwt => {
                let r: ReportResult = api
                    .post(
                        "/v1/exposures",
                        &json!({"source": src, "location": location, "text": f.finding.secret.expose()}),
                    )
                    .await?;
                out.extend(r.exposures);
            }
            FindingKind::ThirdParty => third.push((
                src,
                json!({
                    "detector": f.finding.rule_id,
                    "fingerprint": f.finding.fingerprint,
                    "excerpt": f.finding.redacted,
                    "location": location,
                }),
            )),
        }
    }
    let mut by_source: HashMap<&str, Vec<Value>> = HashMap::new();
    for (src, v) in third {
        by_source.entry(src).or_default().push(v);
    }
    for (src, list) in by_source {
        for batch in list.chunks(REPORT_BATCH) {
            let r: ReportResult = api
                .post(
                    "/v1/exposures",
                    &json!({"source": src, "location": "leash scan", "findings": batch}),
                )
                .await?;
            out.extend(r.exposures);
        }
    }
    Ok(out)
}

fn render_text(
    rep: &Report,
    server: Option<&[ExposureView]>,
    elapsed: std::time::Duration,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for f in &rep.findings {
        let l = &f.location;
        let _ = writeln!(
            o,
            "{}:{}:{}  {}  {}  {}",
            l.path, l.line, l.column, f.finding.rule_id, f.finding.redacted, f.finding.description
        );
        if let Some(c) = &l.commit {
            let _ = writeln!(
                o,
                "    introduced in {} by {} <{}> at {}",
                &c.id[..c.id.len().min(12)],
                c.author_name,
                c.author_email,
                c.time
            );
        }
    }
    let what = match rep.stats.commits {
        Some(c) => format!("{} blob(s) in {c} commit(s)", rep.stats.items),
        None => format!("{} item(s)", rep.stats.items),
    };
    let _ = writeln!(
        o,
        "{} secret(s) found in {what} ({:.1} MB, {} binary skipped) in {:.2}s",
        rep.findings.len(),
        rep.stats.bytes as f64 / 1e6,
        rep.stats.skipped_binary,
        elapsed.as_secs_f64()
    );
    if let Some(list) = server {
        let count = |a: &str| list.iter().filter(|e| e.action == a && !e.repeat).count();
        let revoked: u64 = list.iter().map(|e| e.revoked_count).sum();
        let _ = writeln!(
            o,
            "reported to Leash: {} Leash token(s) revoked ({revoked} with descendants), {} tracked external token(s) matched, {} untracked, {} already known",
            count("revoked"),
            count("matched_external"),
            count("unmatched"),
            list.iter().filter(|e| e.repeat).count(),
        );
        for e in list
            .iter()
            .filter(|e| e.action == "matched_external" && !e.repeat)
        {
            let _ = writeln!(
                o,
                "  {} → external token {} (owner {}; used by {})",
                e.excerpt,
                e.external.as_deref().unwrap_or("-"),
                e.owner.as_deref().unwrap_or("nobody"),
                e.blast_radius.workloads.join(", ")
            );
        }
    }
    o
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub async fn run(a: ScanArgs, api: Option<Api>, json_flag: bool) -> ExitCode {
    match scan(a, api, json_flag).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn scan(a: ScanArgs, api: Option<Api>, json_flag: bool) -> Result<ExitCode> {
    let format = match (json_flag, a.format.as_str()) {
        (true, _) | (false, "json") => Format::Json,
        (false, "text") => Format::Text,
        (false, "sarif") => Format::Sarif,
        (false, other) => bail!("--format `{other}`: use text, json or sarif"),
    };
    if let Some(s) = &a.source {
        s.parse::<leash_core::ExposureSource>()
            .map_err(|e| anyhow::anyhow!("--source: {e}"))?;
    }
    let extra = match &a.rules {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--rules {} cannot be read", p.display()))?;
            leash_scan::gitleaks::parse_rules(&text)
                .map_err(|e| anyhow::anyhow!("--rules {}: {e}", p.display()))?
                .into_rules()
        }
        None => Vec::new(),
    };
    let scanner = Scanner::builtin_with(extra);
    let api = if a.offline { None } else { api };
    let mut keys = match &api {
        Some(api) => fetch_jwks(api).await?,
        None => HashMap::new(),
    };
    if let Some(p) = &a.jwks {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("--jwks {} cannot be read", p.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("--jwks {} is not JSON", p.display()))?;
        let found = ed25519_keys(&v);
        if found.is_empty() {
            bail!(
                "--jwks {}: no Ed25519 keys (kty OKP, crv Ed25519, kid, x) in it",
                p.display()
            );
        }
        keys.extend(found);
    }
    let check = |t: &str| is_leash_jwt(&keys, t);
    let sources = SourceScanner::new(&scanner)
        .with_options(Options {
            ignore_files: !a.no_ignore,
            ..Options::default()
        })
        .with_leash_jwt_check(&check);
    let paths = if a.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.paths.clone()
    };
    let mut bar = Bar::new(format == Format::Text && std::io::stderr().is_terminal());
    let started = std::time::Instant::now();
    let rep = if a.git {
        let mut all = Report::default();
        for p in &paths {
            let r = sources
                .scan_git_history(p, &mut bar)
                .with_context(|| format!("scanning the git history of {}", p.display()))?;
            all.merge(r);
        }
        all
    } else {
        sources.scan_paths(&paths, &mut bar)
    };
    bar.bar.finish_and_clear();
    let elapsed = started.elapsed();

    let server = match &api {
        Some(api) if !rep.findings.is_empty() => {
            Some(report_to_server(api, &rep.findings, a.source.as_deref()).await?)
        }
        Some(_) => Some(Vec::new()),
        None => None,
    };
    for e in &rep.stats.errors {
        eprintln!("warning: {}: {}", e.path, e.reason);
    }
    let out = match format {
        Format::Text => render_text(&rep, server.as_deref(), elapsed),
        Format::Json => {
            let mut v = report::to_json(&rep);
            v["server"] = match &server {
                Some(list) => json!({ "exposures": list }),
                None => Value::Null,
            };
            serde_json::to_string_pretty(&v)? + "\n"
        }
        Format::Sarif => serde_json::to_string_pretty(&report::to_sarif(&rep))? + "\n",
    };
    emit(&out)?;
    Ok(if rep.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
