//! `leash`: the Leash server and its command-line client.

mod authz;
mod bench;
mod client;
mod commands;
mod exposure;
mod review;
mod scan;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc: the server allocates small short-lived buffers on every request
/// from two threads at once; glibc malloc spent ~10% of the mint path there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Leash: owned, per-task tokens for AI agents and automations, revoked
/// automatically when their run ends, their workflow changes or their owner
/// leaves.
#[derive(Parser)]
#[command(name = "leash", version, about, propagate_version = true)]
pub struct Cli {
    /// Leash server URL.
    #[arg(
        long,
        global = true,
        env = "LEASH_URL",
        default_value = "http://127.0.0.1:8420"
    )]
    pub url: String,
    /// Operator credential (default: read from $LEASH_DATA/operator.token, LEASH_DATA defaulting to ./.leash).
    #[arg(long, global = true, env = "LEASH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (stable shapes, documented in the README) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite in --data).
    Serve(Box<ServeArgs>),
    /// Accountable people and teams.
    #[command(subcommand)]
    Owner(OwnerCmd),
    /// Things that present tokens.
    #[command(subcommand)]
    Workload(WorkloadCmd),
    /// AI workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Runs (tasks) of workflows.
    #[command(subcommand)]
    Run(RunCmd),
    /// OAuth clients: how workloads authenticate at /oauth2/token.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Trusted external issuers for workload identity federation.
    #[command(subcommand)]
    Issuer(IssuerCmd),
    /// Signing keys: list, rotate.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Mint a token for one workload (and normally one run).
    Mint(MintArgs),
    /// Revoke a token (and every token delegated from it).
    Revoke(RevokeArgs),
    /// Answer the four questions about a token: owner, workload, privileges, revocation.
    Explain(ExplainArgs),
    /// List tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Downstream database credentials: the PostgreSQL roles behind `postgres` tokens.
    #[command(subcommand)]
    Credentials(CredentialsCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Find secrets in files, stdin or git history; Leash tokens found are revoked through the server (unless --offline). Exit code 1 when secrets are found.
    Scan(scan::ScanArgs),
    /// Leaked secrets Leash found or was told about, and what it did.
    #[command(subcommand)]
    Exposures(exposure::ExposuresCmd),
    /// Things a human must review.
    #[command(subcommand)]
    Findings(exposure::FindingsCmd),
    /// Third-party credentials tracked by fingerprint (so a leak finds its owner and blast radius).
    #[command(subcommand)]
    External(exposure::ExternalCmd),
    /// Cedar policies: list, add, remove, reload, test sample requests.
    #[command(subcommand)]
    Policy(authz::PolicyCmd),
    /// Requests for write-capable and break-glass tokens: list, approve, deny, claim.
    #[command(subcommand)]
    Approvals(authz::ApprovalsCmd),
    /// Mint an emergency token outside normal policy: loud, at most 1 h, revoked at its TTL.
    BreakGlass(authz::BreakGlassArgs),
    /// Import an inventory of third-party credentials (OAuth grants, API keys, service-account keys).
    Import(review::ImportArgs),
    /// Usage from workload logs.
    #[command(subcommand)]
    Usage(review::UsageCmd),
    /// Would the workflow break without this token or scope? Dry run from usage, or a canary run.
    RemovalTest(review::RemovalArgs),
    /// The three signals, the four questions' coverage and the controls-evidence report.
    Report(review::ReportArgs),
    /// Load drivers against a running server (reproduces the README's figures).
    ///
    /// On the machine the server runs on, start the driver as
    /// `chrt -b 0 leash bench …` (SCHED_BATCH): otherwise each response the
    /// server writes wakes a driver thread that may preempt the server then
    /// and there, a cost no remote client imposes (README, Performance).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Data directory (SQLite database, signing keys, operator credential).
    #[arg(long, env = "LEASH_DATA", default_value = ".leash")]
    pub data: PathBuf,
    /// Keep the registry in this PostgreSQL database (`postgres://…`)
    /// instead of SQLite in the data directory (which still holds the
    /// signing keys, operator credential and policies).
    #[arg(long, env = "LEASH_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// File holding the 32-byte key-encryption key (raw, hex or base64)
    /// that seals the signing keys replicas share through PostgreSQL.
    /// Required with --database (or the key itself, hex or base64, in
    /// LEASH_KEY_ENCRYPTION_KEY: never as a flag, which `ps` would show);
    /// give every replica the same one.
    #[arg(long, value_name = "FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// NATS JetStream server for the revocation fan-out between replicas
    /// and to in-cluster consumers (`nats://127.0.0.1:4222`). Without it,
    /// replicas learn of each other's commits through PostgreSQL
    /// LISTEN/NOTIFY alone.
    #[arg(
        long,
        env = "LEASH_NATS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub nats_url: Option<String>,
    /// On PostgreSQL: how far behind the shared database (or NATS) a
    /// replica may fall before it refuses decisions it cannot vouch for.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub max_staleness: String,
    /// Address to listen on.
    #[arg(long, env = "LEASH_LISTEN", default_value = "127.0.0.1:8420")]
    pub listen: SocketAddr,
    /// `iss` of minted tokens (default http://LISTEN).
    #[arg(long, env = "LEASH_ISSUER")]
    pub issuer: Option<String>,
    /// TTL cap per environment, e.g. `--ttl-cap prod=30m` (defaults prod=1h, stage=4h, dev=8h).
    #[arg(long = "ttl-cap", value_name = "ENV=DURATION")]
    pub ttl_caps: Vec<String>,
    /// `aud` for tokens minted without --audience.
    #[arg(long, default_value = "urn:leash:any")]
    pub default_audience: String,
    /// Most delegation hops below a root token (token exchange, --parent).
    #[arg(long, default_value_t = 4)]
    pub max_delegation_depth: u32,
    /// Re-fetch a trusted issuer's JWKS for an unknown kid at most this often.
    #[arg(long, default_value = "30s")]
    pub jwks_min_refresh: String,
    /// File holding the Slack app's signing secret: Slack Events API calls to /v1/exposures are verified with it.
    #[arg(long, env = "LEASH_SLACK_SIGNING_SECRET_FILE", value_name = "FILE")]
    pub slack_signing_secret_file: Option<PathBuf>,
    /// File holding the Jira webhook secret: `X-Hub-Signature` on /v1/exposures is verified with it.
    #[arg(long, env = "LEASH_JIRA_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub jira_webhook_secret_file: Option<PathBuf>,
    /// GitHub's secret scanning public keys (the JSON GitHub serves at api.github.com/meta/public_keys/secret_scanning), for /v1/partners/github.
    #[arg(long, env = "LEASH_GITHUB_KEYS", value_name = "FILE")]
    pub github_keys: Option<PathBuf>,
    /// Owners are notified of exposures here (a signed JSON POST each).
    #[arg(long, env = "LEASH_NOTIFY_URL", value_name = "URL")]
    pub notify_url: Option<String>,
    /// File holding the secret that signs notifications and connector calls (`Leash-Signature: sha256=HMAC`).
    #[arg(long, env = "LEASH_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// A revocation connector for third-party credentials (repeat): NAME=URL, a generic webhook.
    #[arg(long = "connector", value_name = "NAME=URL")]
    pub connectors: Vec<String>,
    /// Extra scanner rules for the exposure feeds, in gitleaks TOML format.
    #[arg(long, value_name = "FILE")]
    pub scan_rules: Option<PathBuf>,
    /// Directory of operator Cedar policies (`*.cedar`), overlaid on the
    /// shipped defaults and reloaded when it changes [default: DATA/policies].
    #[arg(long, env = "LEASH_POLICY_DIR", value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// What a violation class does besides denying and opening a finding
    /// (repeat): CLASS=revoke|finding. Classes: workload_mismatch,
    /// write_outside_scope (both revoke by default), after_run,
    /// undeclared_tool (finding by default).
    #[arg(long = "on-violation", value_name = "CLASS=RESPONSE")]
    pub on_violation: Vec<String>,
    /// Issue write-capable tokens without the owner's approval (approval is required by default).
    #[arg(long)]
    pub no_write_approval: bool,
    /// Most live write-capable tokens one workload may hold.
    #[arg(long, value_name = "N")]
    pub write_budget: Option<u32>,
    /// Break-glass grants need a second person's approval.
    #[arg(long)]
    pub break_glass_approval: bool,
    /// Newest raw usage records kept (aggregates are never pruned).
    #[arg(long, default_value_t = 1_000_000)]
    pub usage_log_keep: u64,
    /// Most allowed decisions per second written to the raw usage log
    /// (denials and break-glass uses always are).
    #[arg(long, default_value_t = 2_000)]
    pub usage_raw_per_sec: u32,
    /// An external credential unused this many days is stale (a finding).
    #[arg(long, default_value_t = 90)]
    pub stale_days: u32,
    /// Reissues of one workload and scope set at most this far apart form one chain.
    #[arg(long, default_value = "10m")]
    pub churn_gap: String,
    /// A chain of reissues whose effective access spans longer than this is churn (a finding).
    #[arg(long, default_value = "24h")]
    pub churn_threshold: String,
    /// Scopes unused over this many ended runs of a workflow are unused privilege.
    #[arg(long, default_value_t = 5)]
    pub unused_runs: u32,
    /// Uses that make a token's usual set when nothing is declared for it.
    #[arg(long, default_value_t = 20)]
    pub learn_events: u64,
    /// Ended runs a removability verdict of `removable` needs.
    #[arg(long, default_value_t = 3)]
    pub removal_min_runs: u32,
    /// Highest write-capable share of live tokens the report passes (0-1).
    #[arg(long, default_value_t = 0.2)]
    pub write_max_ratio: f64,
    /// PostgreSQL database in which `--format postgres` tokens get their
    /// roles (`postgres://USER@HOST:PORT/DB`; USER needs CREATEROLE).
    /// Without it, `postgres` tokens are refused.
    #[arg(
        long,
        env = "LEASH_CREDENTIAL_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub credential_database: Option<String>,
    /// Where connection strings point (host, port, database), when clients
    /// reach the database elsewhere than --credential-database says.
    #[arg(long, value_name = "URL", requires = "credential_database")]
    pub credential_host_url: Option<String>,
    /// Longest wait between attempts to drop an ended credential's role, and
    /// the retry period once it is `drop_failed`.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub credential_retry_max: String,
}

#[derive(Subcommand)]
pub enum CredentialsCmd {
    /// List credentials (no secrets): role, database, drop status, attempts, last error.
    List {
        /// active, dropped or drop_failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this token id (paging).
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum OwnerCmd {
    /// Register an owner.
    Add {
        name: String,
        #[arg(long)]
        email: String,
        /// person or team.
        #[arg(long, default_value = "person")]
        kind: String,
        /// The owner has a business reason to own tokens (not only a platform team).
        #[arg(long)]
        business_owner: bool,
    },
    /// List owners.
    List,
    /// Show one owner.
    Show { name: String },
    /// Offboard an owner: every token they own is revoked at once.
    Offboard { name: String },
    /// Create a credential with which this owner approves requests (shown once).
    Credential { name: String },
    /// Let another owner (a person) approve requests on this owner's behalf.
    Delegate {
        name: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum WorkloadCmd {
    /// Register a workload.
    Add {
        name: String,
        #[arg(long)]
        owner: String,
        /// Identity matcher, e.g. spiffe://acme.org/agents/triage.
        #[arg(long)]
        identity: Option<String>,
        /// dev, stage or prod (sets the TTL cap).
        #[arg(long = "env")]
        environment: String,
        /// Scope ceiling entries (repeat): the most this workload may ever hold.
        #[arg(long = "ceiling", required = true)]
        ceiling: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
    /// Map an issuer's verified claims to this workload (all globs must match).
    IdentityRule {
        name: String,
        #[arg(long)]
        issuer: String,
        /// CLAIM=GLOB, repeat, e.g. --claim sub='repo:acme/agents:ref:refs/heads/main'.
        #[arg(long = "claim", required = true)]
        claims: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum WorkflowCmd {
    /// Register a workflow; its definition file is hashed (SHA-256).
    Add {
        name: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        definition: PathBuf,
        /// Declared tools (repeat).
        #[arg(long = "tool")]
        tools: Vec<String>,
    },
    /// Change the definition: tokens of runs on the old one are revoked.
    Update {
        name: String,
        #[arg(long)]
        definition: PathBuf,
        /// Replace the declared tools (repeat); omitted keeps them.
        #[arg(long = "tool")]
        tools: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum RunCmd {
    /// Start a run of WORKFLOW by a workload.
    Start {
        workflow: String,
        #[arg(long)]
        workload: String,
    },
    /// End a run: every token of it is revoked in the same transaction.
    End {
        run: i64,
        /// succeeded, failed or cancelled.
        #[arg(long)]
        status: String,
    },
    List {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        run: i64,
    },
}

#[derive(Subcommand)]
pub enum IssuerCmd {
    /// Trust an issuer: its tokens can be exchanged (RFC 8693) for Leash tokens.
    Add {
        name: String,
        /// The exact `iss` of its tokens.
        #[arg(long)]
        issuer: String,
        /// Where its JWK Set is fetched (cached; refreshed on an unknown kid).
        #[arg(long, conflicts_with = "jwks")]
        jwks_url: Option<String>,
        /// An inline JWK Set / SPIFFE trust bundle file instead.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The `aud` its tokens must carry.
        #[arg(long)]
        audience: String,
    },
    /// Issuers and their identity rules.
    List,
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// The published keys, newest (signing) first, with retirement times.
    List,
    /// Add a key that signs from now on; the old one stays in the JWKS until the longest TTL has passed.
    Rotate,
}

#[derive(Subcommand)]
pub enum ClientCmd {
    /// Register a client for a workload; its secret is printed once.
    Add {
        #[arg(long)]
        workload: String,
        /// Public JWK Set file for private_key_jwt (RFC 7523).
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Issue no client secret (key-only client; needs --jwks).
        #[arg(long)]
        no_secret: bool,
        /// A resource server: may introspect tokens at /oauth2/introspect.
        #[arg(long)]
        introspect: bool,
    },
    List,
}

#[derive(Args)]
pub struct MintArgs {
    #[arg(long)]
    pub workload: String,
    #[arg(long)]
    pub run: Option<i64>,
    /// Scopes (repeat), each `TYPE[:ID_PATTERN]:ACTION`.
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. 15m, 1h.
    #[arg(long)]
    pub ttl: String,
    /// Audience (repeat).
    #[arg(long)]
    pub audience: Vec<String>,
    /// Business reason; required for write scopes.
    #[arg(long)]
    pub justification: Option<String>,
    /// jwt, opaque or postgres (a PostgreSQL role: prints its connection
    /// string; scopes `pg:SCHEMA.TABLE:read|write`, `pg:SCHEMA.*:read|write`).
    #[arg(long, default_value = "jwt")]
    pub format: String,
    /// Delegate from this token (id or token): only narrower scope, audience and lifetime; revoked with it.
    #[arg(long)]
    pub parent: Option<String>,
    /// RFC 8693 may_act: the only workload that may act for this token in a token exchange.
    #[arg(long)]
    pub may_act: Option<String>,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// A token (lsh_… or JWT) or a token id (tok_…). Use `-` to read it from stdin.
    pub token_or_id: String,
    #[arg(long)]
    pub reason: String,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// A token (lsh_… or JWT) or a token id (tok_…). Use `-` to read it from stdin.
    pub token_or_id: String,
}

#[derive(Subcommand)]
pub enum TokensCmd {
    /// List tokens, filtered.
    List {
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        workload: Option<String>,
        #[arg(long)]
        run: Option<i64>,
        /// active, revoked or expired.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this id (paging).
        #[arg(long)]
        after: Option<String>,
    },
    /// How a token was used: every decision about it, aggregated, and the newest ones.
    Usage { id: String },
    /// Write-capable tokens among all live tokens.
    WriteRatio,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain; with --data (a data directory) or --database
    /// (a postgres:// URL), offline against the database itself (no server).
    Verify {
        #[arg(long, conflicts_with = "database")]
        data: Option<PathBuf>,
        #[arg(long)]
        database: Option<String>,
    },
    /// Show the latest events.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep polling for new events.
        #[arg(short, long)]
        follow: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEASH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
