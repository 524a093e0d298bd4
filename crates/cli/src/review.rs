//! `leash import`, `leash usage ingest`, `leash removal-test`, `leash report`.

use std::io::{BufRead, BufReader, IsTerminal, Read};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use leash_server::api::review::{ImportView, RemovalView};
use leash_server::review::{IngestOutcome, UnknownRef};
use serde_json::{Value, json};

use crate::client::{Api, enc};
use crate::commands::{or_dash, print_json, show, table};

/// Most bytes sent in one ingest request.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of one OTLP document (it cannot be split).
const DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args)]
pub struct ImportArgs {
    /// A JSON or CSV export (`-` for stdin): GitHub credential authorizations,
    /// an AWS IAM credential report, `gcloud iam service-accounts keys list
    /// --format=json`, or Leash's generic format.
    pub file: String,
    /// auto, json or csv.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Where the export came from (default: the file name).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Subcommand)]
pub enum UsageCmd {
    /// Read workload logs (JSON lines or OpenTelemetry OTLP JSON) and record
    /// each use by token id or fingerprint; findings are computed as it goes.
    Ingest {
        /// The log file (`-` for stdin).
        file: String,
        /// A name for where the lines come from.
        #[arg(long, default_value = "log")]
        source: String,
        /// Lines per request.
        #[arg(long, default_value_t = 50_000)]
        batch_lines: usize,
    },
}

#[derive(Args)]
pub struct RemovalArgs {
    /// A token id (`tok_…`), a scope (`repo:acme/api:write`, with --workflow)
    /// or an external credential (`external:NAME`).
    pub target: Option<String>,
    /// The workflow whose runs are read (for a scope).
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs by this workload.
    #[arg(long)]
    pub workload: Option<String>,
    /// How many recent ended runs to read.
    #[arg(long)]
    pub runs: Option<u32>,
    /// Deny the scopes to the workflow's next run and record its outcome.
    #[arg(long)]
    pub canary: bool,
    /// List every test with its latest verdict.
    #[arg(long, conflicts_with = "target")]
    pub list: bool,
    /// Show one test.
    #[arg(long, conflicts_with = "target")]
    pub show: Option<i64>,
}

#[derive(Args)]
pub struct ReportArgs {
    /// md, html or json (`--json` is the same as `--format json`).
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}

fn read_input(file: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
    } else {
        buf = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    }
    Ok(buf)
}

pub async fn import(api: &Api, a: ImportArgs, j: bool) -> Result<()> {
    let body = read_input(&a.file)?;
    let source = a.source.unwrap_or_else(|| {
        std::path::Path::new(&a.file)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into())
    });
    let path = format!(
        "/v1/external-tokens/import?format={}&source={}",
        enc(&a.format),
        enc(&source)
    );
    let v: ImportView = api
        .post_bytes(&path, "application/octet-stream", body)
        .await
        .with_context(|| format!("importing {}", a.file))?;
    show(j, &v, |v| {
        println!(
            "imported {} record(s): {} new, {} updated; {} without an owner{}",
            v.records,
            v.created,
            v.updated,
            v.unowned,
            if v.findings.is_empty() {
                String::new()
            } else {
                format!(
                    " (findings {})",
                    v.findings
                        .iter()
                        .map(|f| format!("#{f}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        );
    })
}

/// Is this input one multi-line JSON document (OTLP) rather than JSON lines?
fn is_document(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return false;
    }
    let first = trimmed.lines().next().unwrap_or_default();
    serde_json::from_str::<serde::de::IgnoredAny>(first).is_err()
}

#[derive(Default, serde::Serialize)]
struct Totals {
    lines: u64,
    events: u64,
    matched: u64,
    unknown_refs: u64,
    unknown: Vec<UnknownRef>,
    skipped: u64,
    skipped_lines: Vec<Value>,
    findings_opened: Vec<i64>,
    findings_refreshed: Vec<i64>,
    seconds: f64,
}

impl Totals {
    fn add(&mut self, o: IngestOutcome) {
        self.lines += o.lines;
        self.events += o.events;
        self.matched += o.matched;
        self.unknown_refs += o.unknown_refs;
        for u in o.unknown {
            if self.unknown.len() < 100 {
                self.unknown.push(u);
            }
        }
        self.skipped += o.skipped;
        for s in o.skipped_lines {
            if self.skipped_lines.len() < 100 {
                self.skipped_lines.push(json!(s));
            }
        }
        self.findings_opened.extend(o.findings_opened);
        for f in o.findings_refreshed {
            if !self.findings_refreshed.contains(&f) {
                self.findings_refreshed.push(f);
            }
        }
    }
}

pub async fn usage(api: &Api, cmd: UsageCmd, j: bool) -> Result<()> {
    let UsageCmd::Ingest {
        file,
        source,
        batch_lines,
    } = cmd;
    if batch_lines == 0 {
        bail!("--batch-lines must be at least 1");
    }
    let start = std::time::Instant::now();
    let (reader, size): (Box<dyn Read>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&file).with_context(|| format!("opening {file}"))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let visible = !j && std::io::stderr().is_terminal();
    let bar = match (visible, size) {
        (false, _) => ProgressBar::hidden(),
        (true, Some(n)) => ProgressBar::new(n),
        (true, None) => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let path = |first: u64| {
        format!(
            "/v1/usage/ingest?source={}&first_line={first}",
            enc(&source)
        )
    };
    let mut totals = Totals::default();
    let head = reader.fill_buf().context("reading the log")?.to_vec();
    if is_document(&head) {
        let mut body = Vec::new();
        reader
            .take(DOCUMENT_BYTES + 1)
            .read_to_end(&mut body)
            .context("reading the log")?;
        if body.len() as u64 > DOCUMENT_BYTES {
            bail!(
                "{file} is one JSON document over 64 MiB; export it as JSON lines (one record per line)"
            );
        }
        let o: IngestOutcome = api.post_bytes(&path(1), "application/json", body).await?;
        totals.add(o);
    } else {
        // two batches in flight: the server parses one while it records the other
        let mut in_flight: std::collections::VecDeque<(
            u64,
            tokio::task::JoinHandle<Result<IngestOutcome>>,
        )> = std::collections::VecDeque::new();
        let mut line_no: u64 = 1;
        let mut line = Vec::new();
        loop {
            let mut body = Vec::new();
            let first = line_no;
            let mut n = 0usize;
            while n < batch_lines && body.len() < BATCH_BYTES {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .context("reading the log")?;
                if read == 0 {
                    break;
                }
                body.extend_from_slice(&line);
                n += 1;
            }
            if n == 0 {
                break;
            }
            line_no += n as u64;
            bar.inc(body.len() as u64);
            if in_flight.len() >= 2
                && let Some((at, task)) = in_flight.pop_front()
            {
                totals.add(finish(task, &file, at).await?);
            }
            let (api, p) = (api.clone(), path(first));
            in_flight.push_back((
                first,
                tokio::spawn(async move { api.post_bytes(&p, "application/x-ndjson", body).await }),
            ));
            bar.set_message(format!(
                "{} events, {} unknown, {} findings",
                totals.events,
                totals.unknown_refs,
                totals.findings_opened.len()
            ));
        }
        while let Some((at, task)) = in_flight.pop_front() {
            totals.add(finish(task, &file, at).await?);
        }
    }
    bar.finish_and_clear();
    totals.seconds = start.elapsed().as_secs_f64();
    if j {
        return print_json(&totals);
    }
    println!(
        "{} line(s), {} usage event(s) in {:.1} s ({:.0}/s): {} matched, {} with a token Leash does not know, {} line(s) skipped",
        totals.lines,
        totals.events,
        totals.seconds,
        totals.events as f64 / totals.seconds.max(1e-9),
        totals.matched,
        totals.unknown_refs,
        totals.skipped
    );
    for u in totals.unknown.iter().take(10) {
        println!("  unknown {} `{}` (line {})", u.by, u.value, u.line);
    }
    for s in totals.skipped_lines.iter().take(5) {
        println!(
            "  skipped line {}: {}",
            s["line"],
            s["reason"].as_str().unwrap_or_default()
        );
    }
    if !totals.findings_opened.is_empty() {
        println!(
            "opened {} finding(s): see `leash findings list`",
            totals.findings_opened.len()
        );
    }
    Ok(())
}

async fn finish(
    task: tokio::task::JoinHandle<Result<IngestOutcome>>,
    file: &str,
    first: u64,
) -> Result<IngestOutcome> {
    task.await
        .context("an ingest request stopped")?
        .with_context(|| format!("ingesting {file} from line {first}"))
}

fn removal_text(t: &RemovalView) {
    println!(
        "removal test #{}  {} `{}`  → {}",
        t.id,
        t.target_kind,
        t.target,
        t.verdict.to_uppercase()
    );
    println!("  {}", t.summary);
    println!(
        "  workflow {}  workload {}  scopes {}",
        or_dash(t.workflow.as_deref()),
        or_dash(t.workload.as_deref()),
        if t.scopes.is_empty() {
            "-".into()
        } else {
            t.scopes.join(" ")
        }
    );
    if let Some(breaks) = t.evidence["would_break"].as_array() {
        for b in breaks.iter().take(20) {
            println!(
                "  would break: run {} step `{}` ({} on {}, {} use(s))",
                b["run"],
                b["step"].as_str().unwrap_or_default(),
                b["action"].as_str().unwrap_or_default(),
                b["resource"].as_str().unwrap_or_default(),
                b["uses"]
            );
        }
    }
    match t.canary.as_str() {
        "none" => {}
        "armed" => println!("  canary armed: the next run of the workflow is denied these scopes"),
        other => println!(
            "  canary {other} (run {}, {} request(s) denied)",
            t.canary_run
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            t.canary_denied
        ),
    }
    println!("  updated {}", t.updated_at);
}

pub async fn removal_test(api: &Api, a: RemovalArgs, j: bool) -> Result<()> {
    if a.list {
        let list: Vec<RemovalView> = api.get("/v1/removal-tests").await?;
        return show(j, &list, |list| {
            table(
                &["id", "target", "verdict", "canary", "summary"],
                list.iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.target.clone(),
                            t.verdict.clone(),
                            t.canary.clone(),
                            t.summary.chars().take(80).collect(),
                        ]
                    })
                    .collect(),
            )
        });
    }
    if let Some(id) = a.show {
        let t: RemovalView = api.get(&format!("/v1/removal-tests/{id}")).await?;
        return show(j, &t, removal_text);
    }
    let Some(target) = a.target else {
        bail!(
            "name what to test: a token id, a scope (with --workflow) or external:NAME; or use --list"
        );
    };
    let body = json!({
        "target": target, "workflow": a.workflow, "workload": a.workload,
        "runs": a.runs, "canary": a.canary,
    });
    let t: RemovalView = api.post("/v1/removal-tests", &body).await?;
    show(j, &t, removal_text)
}

pub async fn report(api: &Api, a: ReportArgs, j: bool) -> Result<()> {
    let format = if j { "json".to_owned() } else { a.format };
    if !matches!(format.as_str(), "json" | "md" | "html") {
        bail!("unknown report format `{format}`; use md, html or json");
    }
    let text = api.get_text(&format!("/v1/report?format={format}")).await?;
    let text = if format == "json" {
        let v: Value = serde_json::from_str(&text).context("the report is not JSON")?;
        serde_json::to_string_pretty(&v)?
    } else {
        text
    };
    match a.output {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            if !j {
                eprintln!("report written to {}", p.display());
            }
        }
        None => println!("{text}"),
    }
    Ok(())
}
