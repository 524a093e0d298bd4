#!/usr/bin/env python3
"""Generate the labeled scan corpus: synthetic secrets planted in realistic
text, next to hard decoys. Deterministic (fixed seed); rerun to rebuild.

    python3 crates/scan/tests/corpus/generate.py

Every secret here is random: none was ever issued by any service. Formats
with a checksum (GitHub, npm, Leash `lsh_`) get a valid one; decoys get a
wrong one. `labels.json` lists every expected finding: file, 1-based line of
the secret's first character, rule id and kind.
"""
import base64
import json
import os
import random
import string
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(1729)
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
HEX = "0123456789abcdef"
URL = B62 + "_-"
B64 = B62 + "+/"
BAD = ["xxx", "example", "1234", "abcd", "test", "fake", "your", "dummy", "key", "token",
       "secret", "pass", "aaaa", "0000", "sample", "redact"]


def rand(alphabet, n, edges=True):
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        if edges and n > 1 and any(c not in B62 for c in alphabet):
            # Start and end on a letter or digit, as real tokens do.
            s = rng.choice(B62) + s[1:-1] + rng.choice(B62)
        low = s.lower()
        if not any(b in low for b in BAD):
            return s


def b62_checksum(random_part):
    n = zlib.crc32(random_part.encode())
    out = ""
    for _ in range(6):
        out = B62[n % 62] + out
        n //= 62
    return out


def crc_token(prefix, n=30, valid=True):
    body = rand(B62, n)
    sum_ = b62_checksum(body)
    if not valid:
        sum_ = sum_[:5] + ("0" if sum_[5] != "0" else "1")
    return prefix + body + sum_


def uuid():
    h = rand(HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, payload, sig_len=43):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    return f"{h}.{p}.{rand(URL, sig_len)}" if sig_len else f"{h}.{p}."


def leash_jwt():
    return jwt({"alg": "EdDSA", "typ": "at+jwt", "kid": "leash-test-kid"},
               {"iss": "https://leash.acme.dev", "sub": "wl_triage-bot", "aud": "github",
                "exp": 1893456000, "iat": 1893452400, "jti": "tok_" + rand(B62, 22),
                "scope": "repo:read issues:write", "owner": "alice", "workload": "triage-bot"}, 86)


def pem_lines(label, nbytes=1190):
    body = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(nbytes))).decode()
    return [f"-----BEGIN {label}-----"] + [body[i:i + 64] for i in range(0, len(body), 64)] + [f"-----END {label}-----"]


def b64bytes(n):
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(n))).decode()


class Doc:
    def __init__(self, path):
        self.path = path
        self.lines = []
        self.labels = []

    def add(self, *lines):
        self.lines.extend(lines)

    def plant(self, rule, text, kind="third_party", offset=0):
        """Add `text` (one or more lines); its secret starts `offset` lines in."""
        parts = text.split("\n")
        self.labels.append({"file": self.path, "line": len(self.lines) + 1 + offset,
                            "rule": rule, "kind": kind})
        self.lines.extend(parts)

    def write(self):
        full = os.path.join(HERE, self.path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write("\n".join(self.lines) + "\n")
        return self.labels


docs = []

# --- tickets --------------------------------------------------------------
d = Doc("tickets/SUP-4127.md")
d.add("# SUP-4127: nightly export job fails with 403", "",
      "**Reporter:** dana@acme.dev  ", "**Priority:** P2", "",
      "The export job started failing after the key rotation on Monday. Logs:", "", "```",
      "2026-03-02T01:00:04Z ERROR export: AccessDenied: request id " + uuid(),
      "2026-03-02T01:00:04Z ERROR export: signature mismatch (etag " + rand(HEX, 32) + ")", "```", "",
      "Config the job is running with (copied from the pod):", "", "```ini", "[default]")
d.plant("aws-access-key-id", "aws_access_key_id = AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))
d.plant("aws-secret-access-key", "aws_secret_access_key = " + rand(B64, 40))
d.add("region = eu-west-1", "```", "",
      "For reference, the docs example we started from was:", "", "```",
      "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
      "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "```", "",
      "I also tried my own token, in case it's a permissions thing:")
d.plant("github-pat", "`" + crc_token("ghp_") + "`")
d.add("", "(the old one, " + crc_token("ghp_", valid=False) + ", was revoked last week — typo'd above in the first comment)", "",
      "Commit with the rotation: " + rand(HEX, 40), "")
docs.append(d)

d = Doc("tickets/SUP-4188.txt")
d.add("Subject: Stripe webhooks failing in staging", "From: ops@acme.dev", "",
      "Hi team,", "", "Since the deploy at 14:20 the payment webhooks return 400. The webhook",
      "endpoint secret in the staging vault is:", "")
d.plant("stripe-webhook-secret", "    whsec_" + rand(B62, 32))
d.add("", "and the API key the service uses:", "")
d.plant("stripe-secret-key", "    sk_live_" + rand(B62, 99))
d.add("", "Our docs page still shows the placeholder sk_live_<your-key-here> which confused me.",
      "The test key from Stripe's documentation (sk_test_4eC39HqLyjWDarjtT1zdp7dc) works fine.", "",
      "Slack alert channel webhook, in case someone wants to replay the alerts:")
d.plant("slack-webhook-url", "https://hooks.slack.com/services/T" + rand(string.ascii_uppercase + string.digits, 8)
        + "/B" + rand(string.ascii_uppercase + string.digits, 10) + "/" + rand(B62, 24))
d.add("", "Request ids: " + uuid() + ", " + uuid(), "Idempotency-Key: " + uuid(), "",
      "Thanks,", "Priya", "")
docs.append(d)

d = Doc("tickets/SUP-4203.md")
d.add("# SUP-4203: model gateway returns 401 for the summariser", "",
      "Steps to reproduce:", "", "1. export the env from `.env.staging`",
      "2. `python -m summariser --dry-run`", "", "Relevant env (values pasted by the reporter):", "", "```")
d.plant("openai-project-key", "OPENAI_API_KEY=sk-proj-" + rand(URL, 74) + "T3BlbkFJ" + rand(URL, 74))
d.plant("anthropic-api-key", "ANTHROPIC_API_KEY=sk-ant-api03-" + rand(URL, 93) + "AA")
d.add("COHERE_MODEL=command-r-plus", "HF_HOME=/var/cache/hf")
d.plant("huggingface-token", "HF_TOKEN=hf_" + rand(string.ascii_letters, 34))
d.add("```", "", "The README says to set `OPENAI_API_KEY=sk-...` and `ANTHROPIC_API_KEY=<key>`;",
      "maybe the gateway expects the project key format `sk-proj-…`?", "",
      "Dashboard link: https://grafana.acme.dev/d/" + rand(B62, 9) + "/gateway?orgId=1", "")
docs.append(d)

# --- chats ----------------------------------------------------------------
d = Doc("chats/incident-2026-02-11.txt")
d.add("[09:02] <marta> deploy of billing-api is stuck again", "[09:03] <li> which step?",
      "[09:03] <marta> docker login in the release job", "[09:04] <li> here's the bot's hub token, try it locally:")
d.plant("dockerhub-pat", "[09:04] <li> dckr_pat_" + rand(URL, 27))
d.add("[09:05] <marta> works. also the pypi upload failed, do we have the org token?")
d.plant("pypi-upload-token", "[09:06] <li> pypi-AgEIcHlwaS5vcmc" + rand(URL, 150))
d.add("[09:06] <li> please don't paste it anywhere else", "[09:07] <sam> lol",
      "[09:09] <sam> fyi the telegram alert bot is dead, token:")
d.plant("telegram-bot-token", "[09:09] <sam> " + rand(string.digits, 10) + ":AA" + rand(URL, 33))
d.add("[09:10] <marta> commit " + rand(HEX, 40)[:12] + " fixed it", "[09:12] <li> checksum of the artifact: sha256:" + rand(HEX, 64),
      "[09:13] <marta> trace id 4bf92f3577b34da6a3ce929d0e0e4736 for the failing request",
      "[09:15] <sam> the npm token in CI is this one:")
d.plant("npm-access-token", "[09:15] <sam> " + crc_token("npm_"))
d.add("[09:16] <li> and the one in the wiki (" + crc_token("npm_", valid=False) + ") is a typo, ignore it",
      "[09:20] <marta> closing the incident", "")
docs.append(d)

d = Doc("chats/slack-export-devops.json")
msgs = []
planted = []
def msg(user, text, rule=None, kind="third_party"):
    msgs.append((user, text, rule, kind))
msg("U02A", "rotating the gitlab runner token now")
msg("U02A", "new one: glrt-" + rand(URL, 20), "gitlab-runner-token")
msg("U03B", "thanks! and the project access token for the mirror?")
msg("U02A", "glpat-" + rand(URL, 20), "gitlab-pat")
msg("U03B", "the grafana dashboard uid is " + rand(B62, 14) + ", panel 4")
msg("U04C", "someone posted a leash token in #general, here it is so you can revoke: " + crc_token("lsh_", 32), "leash-opaque", "leash_opaque")
msg("U02A", "revoked. fwiw lsh_ tokens have a checksum, the one in the runbook (" + crc_token("lsh_", 32, valid=False) + ") is fake")
msg("U03B", "image digest sha256:" + rand(HEX, 64))
msg("U04C", "datadog key for the new env: DD_API_KEY=" + rand(HEX, 32), "datadog-api-key")
msg("U02A", "base64 of the logo for the status page: iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
msg("U03B", "PR " + rand(string.digits, 4) + " fixes the vault auth; VAULT_TOKEN=hvs." + rand(URL, 95), "vault-service-token")
msg("U04C", "ok")
lines = ["["]
for i, (user, text, rule, kind) in enumerate(msgs):
    entry = json.dumps({"type": "message", "user": user, "ts": f"1760{rng.randint(100000, 999999)}.{rng.randint(100000, 999999)}", "text": text})
    if rule:
        d.labels.append({"file": d.path, "line": len(lines) + 1, "rule": rule, "kind": kind})
    lines.append("  " + entry + ("," if i + 1 < len(msgs) else ""))
lines.append("]")
d.lines = lines
docs.append(d)

# --- code -----------------------------------------------------------------
d = Doc("code/billing/settings.py")
d.add('"""Django settings for billing."""', "import os", "from pathlib import Path", "",
      "BASE_DIR = Path(__file__).resolve().parent.parent", "")
d.plant("generic-secret", "SECRET_KEY = '" + rand(B62 + "!@#%^&*(-_=+)", 50, edges=True).replace("'", "") + "'")
d.add("DEBUG = False", "ALLOWED_HOSTS = ['billing.acme.dev']", "",
      "# Read from the environment in production.",
      "STRIPE_SECRET_KEY = os.environ.get('STRIPE_SECRET_KEY')",
      "SESSION_COOKIE_NAME = 'billing_session'", "CSRF_COOKIE_NAME = 'billing_csrftoken'", "",
      "DATABASES = {", "    'default': {", "        'ENGINE': 'django.db.backends.postgresql',",
      "        'NAME': 'billing',", "        'USER': 'billing',")
d.plant("generic-password", "        'PASSWORD': '" + rand(B62, 12) + "#" + rand(B62, 5) + "',")
d.add("        'HOST': 'db.internal',", "    },", "}", "",
      "PASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']",
      "AUTH_PASSWORD_VALIDATORS = [{'NAME': 'django.contrib.auth.password_validation.MinimumLengthValidator'}]",
      "")
d.plant("postgres-connection-string", "REPORTING_DB_URL = 'postgresql+psycopg2://report:" + rand(B62, 18) + "@10.0.3.7:5432/warehouse'")
d.add("CACHE_URL = os.environ.get('CACHE_URL', 'redis://localhost:6379/0')",
      "DEV_DB_URL = 'postgres://postgres:postgres@localhost:5432/billing'", "")
docs.append(d)

d = Doc("code/web/src/firebase.ts")
d.add("import { initializeApp } from 'firebase/app';", "", "const firebaseConfig = {")
d.plant("gcp-api-key", "  apiKey: 'AIza" + rand(URL, 35) + "',")
d.add("  authDomain: 'acme-web.firebaseapp.com',", "  projectId: 'acme-web',",
      "  appId: '1:" + rand(string.digits, 12) + ":web:" + rand(HEX, 22) + "',", "};", "",
      "export const app = initializeApp(firebaseConfig);", "",
      "// Mapbox public token is fine to ship; the secret one lives in the server.",
      "export const MAPBOX_PUBLIC = 'pk.eyJ1Ijoi" + rand(URL, 60) + "." + rand(URL, 22) + "';", "",
      "export async function sendMail(to: string) {",
      "  const res = await fetch('https://api.sendgrid.com/v3/mail/send', {",
      "    headers: {")
d.plant("sendgrid-api-key", "      Authorization: `Bearer SG." + rand(URL, 22) + "." + rand(URL, 43) + "`,")
d.add("    },", "  });", "  return res.ok;", "}", "",
      "// integrity of the vendored bundle",
      "export const INTEGRITY = 'sha512-" + b64bytes(64) + "';",
      "export const PLACEHOLDER_KEY = 'AIza' + 'SyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX';", "")
docs.append(d)

d = Doc("code/deployer/main.go")
d.add("package main", "", "import (", '\t"context"', '\t"os"', ")", "",
      "// Tokens look like dop_v1_<64 hex>; never hard-code one.", "const defaultRegion = \"fra1\"", "")
d.plant("digitalocean-pat", 'var fallbackToken = "dop_v1_' + rand(HEX, 64) + '"')
d.add("", "func token() string {", '\tif t := os.Getenv("DIGITALOCEAN_TOKEN"); t != "" {', "\t\treturn t", "\t}",
      "\treturn fallbackToken", "}", "",
      "func main() {", "\tctx := context.Background()", "\t_ = ctx")
d.plant("github-fine-grained-pat", '\tgh := newClient("github_pat_' + rand(B62, 22) + "_" + rand(B62, 59) + '")')
d.add("\t_ = gh", '\tsum := "' + rand(HEX, 64) + '" // sha256 of the release tarball', "\t_ = sum",
      '\tid := "' + uuid() + '"', "\t_ = id", "}", "")
docs.append(d)

d = Doc("code/tools/test_client.rs")
d.add("use leash_client::Client;", "", "#[test]", "fn rejects_a_mistyped_token() {",
      "    // Checksum deliberately wrong: must be rejected offline.",
      '    let bad = "' + crc_token("lsh_", 32, valid=False) + '";',
      "    assert!(Client::parse_token(bad).is_err());", "}", "", "#[test]", "fn accepts_the_staging_token() {")
d.plant("leash-opaque", '    let good = "' + crc_token("lsh_", 32) + '";', "leash_opaque")
d.add("    assert!(Client::parse_token(good).is_ok());", "}", "",
      "const JWT_NONE: &str = \"" + jwt({"alg": "none"}, {"sub": "1"}, 0) + "\";",
      "const FIXTURE_HASH: &str = \"" + rand(HEX, 40) + "\";", "")
docs.append(d)

d = Doc("code/scripts/backup.sh")
d.add("#!/usr/bin/env bash", "set -euo pipefail", "",
      '# Usage: PGPASSWORD=... ./backup.sh', 'DB_HOST="${DB_HOST:-db.internal}"',
      'PGPASSWORD="${PGPASSWORD:?set PGPASSWORD}"', "")
d.plant("url-credentials", 'curl -fsS -T dump.sql.gz "ftp://backup:' + rand(B62, 16) + '@files.acme.dev/nightly/"')
d.add("", "# upload to the artifact registry")
d.plant("jfrog-api-key", 'curl -H "X-JFrog-Art-Api: AKCp' + rand(B62, 69) + '" -T dump.sql.gz https://acme.jfrog.io/backups/')
d.add("", 'echo "done at $(date -u +%FT%TZ)"', "")
docs.append(d)

# --- configs --------------------------------------------------------------
d = Doc("configs/.env.production")
d.add("# production env for the api service", "NODE_ENV=production", "PORT=8080", "LOG_LEVEL=info")
d.plant("postgres-connection-string", "DATABASE_URL=postgres://api:" + rand(B62, 22) + "@pg-primary.internal:5432/api")
d.plant("redis-connection-string", "REDIS_URL=rediss://default:" + rand(B62, 32) + "@cache.acme.dev:6380/0")
d.plant("groq-api-key", "GROQ_API_KEY=gsk_" + rand(B62, 52))
d.plant("replicate-api-token", "REPLICATE_API_TOKEN=r8_" + rand(B62, 37))
d.plant("perplexity-api-key", "PERPLEXITY_API_KEY=pplx-" + rand(B62, 48))
d.plant("linear-api-key", "LINEAR_API_KEY=lin_api_" + rand(B62, 40))
d.plant("generic-secret", "INTERNAL_API_TOKEN=" + rand(B62, 32))
d.add("SENTRY_DSN=https://" + rand(HEX, 32) + "@o" + rand(string.digits, 6) + ".ingest.sentry.io/" + rand(string.digits, 7))
d.plant("sentry-user-token", "SENTRY_AUTH_TOKEN=sntryu_" + rand(HEX, 64))
d.add("FEATURE_FLAGS=checkout_v2,search_v3", "S3_BUCKET=acme-prod-uploads", "")
docs.append(d)

d = Doc("configs/.env.example")
d.add("# Copy to .env and fill in. Never commit real values.",
      "OPENAI_API_KEY=your_api_key_here", "ANTHROPIC_API_KEY=sk-ant-api03-...",
      "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "DATABASE_URL=postgres://user:password@localhost:5432/app",
      "DB_PASSWORD=changeme", "JWT_SECRET=${JWT_SECRET}", "SLACK_BOT_TOKEN=xoxb-your-token",
      "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "SESSION_SECRET=<generate with openssl rand -hex 32>",
      "ADMIN_PASSWORD=********", "API_KEY={{ api_key }}", "AWS_SECRET_ACCESS_KEY=", "")
docs.append(d)

d = Doc("configs/docker-compose.yml")
d.add("services:", "  db:", "    image: postgres:16", "    environment:",
      "      POSTGRES_USER: app", "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}",
      "  queue:", "    image: rabbitmq:3-management", "    environment:")
d.plant("generic-password", "      RABBITMQ_DEFAULT_PASS: " + rand(B62, 10) + "!" + rand(B62, 6))
d.add("  worker:", "    build: ./worker", "    environment:")
d.plant("amqp-connection-string", "      CELERY_BROKER_URL: amqp://worker:" + rand(B62, 20) + "@queue:5672/jobs")
d.add("      CELERY_RESULT_BACKEND: redis://redis:6379/1", "  api:", "    build: ./api", "    environment:")
d.plant("mongodb-connection-string", "      MONGO_URL: mongodb+srv://api:" + rand(B62, 24) + "@cluster0.q1w2e.mongodb.net/app")
d.add("      HEALTHCHECK_TOKEN_HEADER: X-Health", "    healthcheck:",
      '      test: ["CMD", "curl", "-f", "http://localhost:8080/health"]', "")
docs.append(d)

d = Doc("configs/terraform.tfvars")
d.add('region          = "westeurope"', 'resource_prefix = "acme-prod"', "")
d.plant("azure-storage-account-key",
        'storage_connection_string = "DefaultEndpointsProtocol=https;AccountName=acmeprodlogs;AccountKey=' + b64bytes(64) + ';EndpointSuffix=core.windows.net"')
d.add('emulator_connection_string = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"')
d.plant("azure-ad-client-secret", 'client_secret = "' + rand(B62, 3) + "8Q~" + rand(URL, 34) + '"')
d.add('client_id       = "' + uuid() + '"', 'tenant_id       = "' + uuid() + '"', "")
d.plant("terraform-cloud-token", 'tfc_token = "' + rand(B62, 14) + ".atlasv1." + rand(URL, 67) + '"')
d.add('cloudflare_zone_id = "' + rand(HEX, 32) + '"')
d.plant("cloudflare-api-token", 'cloudflare_api_token = "' + rand(URL, 40) + '"')
d.add("")
docs.append(d)

d = Doc("configs/.npmrc")
d.add("registry=https://registry.npmjs.org/", "@acme:registry=https://npm.pkg.github.com/")
d.plant("npm-access-token", "//registry.npmjs.org/:_authToken=" + crc_token("npm_"))
d.plant("github-pat", "//npm.pkg.github.com/:_authToken=" + crc_token("ghp_"))
d.add("# old token, rotated: //registry.npmjs.org/:_authToken=" + crc_token("npm_", valid=False),
      "always-auth=true", "")
docs.append(d)

d = Doc("configs/gcp-ci-deployer.json")
pk = "\\n".join(pem_lines("PRIVATE KEY")) + "\\n"
d.add("{", '  "type": "service_account",', '  "project_id": "acme-ci-381207",',
      '  "private_key_id": "' + rand(HEX, 40) + '",')
d.plant("gcp-service-account-key", '  "private_key": "' + pk + '",')
d.add('  "client_email": "deployer@acme-ci-381207.iam.gserviceaccount.com",',
      '  "client_id": "' + rand(string.digits, 21) + '",',
      '  "auth_uri": "https://accounts.google.com/o/oauth2/auth",',
      '  "token_uri": "https://oauth2.googleapis.com/token"', "}")
docs.append(d)

# --- keys -----------------------------------------------------------------
d = Doc("keys/id_ed25519")
d.plant("private-key", "\n".join(pem_lines("OPENSSH PRIVATE KEY", 300)))
d.add("")
docs.append(d)

d = Doc("keys/deploy-bundle.pem")
d.add("# server certificate (public)")
d.add(*pem_lines("CERTIFICATE", 900))
d.add("# its private key")
d.plant("private-key", "\n".join(pem_lines("RSA PRIVATE KEY", 1190)))
d.add("# the public key, for the pinning config")
d.add(*pem_lines("PUBLIC KEY", 294))
d.add("")
docs.append(d)

d = Doc("keys/authorized_keys")
d.add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + rand(B64, 500) + " ops@bastion",
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rand(B64, 43) + " ci@runner",
      "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB" + rand(B64, 130) + "= dana@laptop", "")
docs.append(d)

d = Doc("keys/release-signing.asc")
d.plant("pgp-private-key-block", "\n".join(
    ["-----BEGIN PGP PRIVATE KEY BLOCK-----", "Comment: Acme release signing <release@acme.dev>", ""]
    + [b64bytes(48) for _ in range(20)] + ["=" + rand(B64, 4), "-----END PGP PRIVATE KEY BLOCK-----"]))
d.add("")
docs.append(d)

# --- logs -----------------------------------------------------------------
d = Doc("logs/api-gateway.log")
def log(level, msg):
    return f"2026-03-04T10:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}Z {level} gateway {msg}"
d.add(log("INFO", "listening on :8443"), log("INFO", "request_id=" + uuid() + " path=/v1/orders status=200"))
d.plant("leash-jwt", log("DEBUG", "upstream auth header: Authorization: Bearer " + leash_jwt()), "leash_jwt")
d.plant("jwt", log("DEBUG", "partner call with id_token=" + jwt({"alg": "RS256", "kid": rand(HEX, 16)},
                                                            {"iss": "https://idp.partner.io/", "sub": rand(string.digits, 12), "exp": 1790000000}, 342)))
d.add(log("WARN", "token=<redacted> rejected: expired"),
      log("INFO", "span_id=" + rand(HEX, 16) + " trace_id=" + rand(HEX, 32)))
d.plant("http-bearer-token", log("DEBUG", "retrying with header authorization: bearer " + rand(B62, 40)))
d.plant("leash-opaque", log("ERROR", "introspection failed for token " + crc_token("lsh_", 32) + ": upstream timeout"), "leash_opaque")
d.add(log("INFO", "cache hit ratio 0.93 etag=W/\"" + rand(HEX, 32) + "\""),
      log("DEBUG", "jwt header eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. ignored (alg none)"))
d.plant("url-credentials", log("ERROR", "webhook to https://hooks:" + rand(B62, 24) + "@partner.example.net/ingest failed: 502"))
d.plant("http-basic-auth", log("DEBUG", "Authorization: Basic " + base64.b64encode(("svc-sync:" + rand(B62, 18)).encode()).decode()))
d.add(log("INFO", "shutting down"), "")
docs.append(d)

d = Doc("logs/ci-build-8812.log")
d.add("Running with gitlab-runner 17.4.0", "Preparing the \"docker\" executor",
      "$ echo \"$CI_REGISTRY_PASSWORD\" | docker login -u \"$CI_REGISTRY_USER\" --password-stdin $CI_REGISTRY",
      "Login Succeeded", "$ export TWINE_PASSWORD=[MASKED]", "$ ./scripts/publish.sh")
d.plant("gitlab-pipeline-trigger-token", "curl -X POST -F token=glptt-" + rand(HEX, 40) + " -F ref=main https://gitlab.acme.dev/api/v4/projects/42/trigger/pipeline")
d.add("Uploading artifacts... sha256 " + rand(HEX, 64), "Cache key: deps-" + rand(HEX, 40))
d.plant("slack-bot-token", "DEBUG notify: posting with SLACK_BOT_TOKEN=xoxb-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(B62, 24))
d.plant("circleci-personal-token", "DEBUG mirror: CIRCLECI_TOKEN=CCIPAT_" + rand(B62, 22) + "_" + rand(HEX, 40))
d.add("Job succeeded", "")
docs.append(d)

d = Doc("logs/k8s-events.txt")
d.add("LAST SEEN   TYPE      REASON    OBJECT                MESSAGE",
      "2m          Normal    Pulled    pod/api-7d9f-x2k4     Successfully pulled image \"ghcr.io/acme/api@sha256:" + rand(HEX, 64) + "\"",
      "2m          Normal    Created   pod/api-7d9f-x2k4     Created container api",
      "1m          Warning   Failed    pod/worker-55c-9kq    Error: secret \"worker-env\" not found",
      "            data:", "              ca.crt: " + b64bytes(600), "")
docs.append(d)

# --- more code and config, with the decoys real code is full of -------------
d = Doc("code/api/handlers.py")
d.add("import hmac", "import os", "from fastapi import Header, HTTPException", "",
      'WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"', "TOKEN_TTL_SECONDS = 3600",
      'PASSWORD_RESET_URL = "https://app.acme.dev/reset-password"', "",
      "def verify_token(token: str, secret: bytes) -> bool:",
      '    """Check the token against the shared secret (constant time)."""',
      "    expected = hmac.new(secret, b\"v1\", \"sha256\").hexdigest()",
      "    return hmac.compare_digest(token, expected)", "",
      "async def whoami(authorization: str = Header(...)):",
      '    token = authorization.removeprefix("Bearer ")',
      "    if not token:", '        raise HTTPException(401, "missing token")',
      "    password = os.environ[\"ADMIN_PASSWORD\"]",
      "    secret_name = f\"prod/api/{token[:8]}\"", "    return {\"ok\": True}", "")
d.plant("openai-api-key", 'LEGACY_OPENAI_KEY = "sk-' + rand(B62, 20) + "T3BlbkFJ" + rand(B62, 20) + '"  # TODO move to vault')
d.plant("twilio-auth-token", 'twilio_auth_token = "' + rand(HEX, 32) + '"')
d.add('twilio_account_sid = "AC' + rand(HEX, 32) + '"', "")
d.add("def sign_request(private_key: Ed25519PrivateKey, body: bytes) -> bytes:", "    return private_key.sign(body)", "")
docs.append(d)

d = Doc("code/infra/main.tf")
d.add('resource "aws_db_instance" "orders" {', '  engine         = "postgres"', '  username       = "orders"',
      "  password       = var.db_password", '  instance_class = "db.t4g.medium"', "}", "",
      'resource "vault_generic_secret" "ci" {', '  path      = "secret/ci"',
      '  data_json = jsonencode({ token = data.vault_generic_secret.ci.data["token"] })', "}", "",
      'provider "datadog" {')
d.plant("datadog-api-key", '  api_key = "' + rand(HEX, 32) + '"')
d.plant("datadog-app-key", '  app_key = "' + rand(HEX, 40) + '"')
d.add("}", "", 'provider "github" {', '  owner = "acme"')
d.plant("github-server-to-server-token", '  token = "' + crc_token("ghs_") + '"')
d.add("}", "", 'output "kms_key_arn" {', '  value = "arn:aws:kms:eu-west-1:' + rand(string.digits, 12) + ':key/' + uuid() + '"', "}", "")
docs.append(d)

d = Doc("configs/application.yml")
d.add("spring:", "  datasource:")
d.plant("jdbc-connection-string", "    url: jdbc:postgresql://pg.internal:5432/ledger?user=ledger&password=" + rand(B62, 18) + "&sslmode=require")
d.add("    username: ledger", "    password: ${LEDGER_DB_PASSWORD}", "  security:", "    oauth2:", "      client:",
      "        registration:", "          okta:", "            client-id: 0oa" + rand(B62, 17))
d.plant("generic-secret", "            client-secret: " + rand(URL, 40))
d.add("management:", "  endpoints:", "    web:", "      exposure:", "        include: health,info",
      "reporting:")
d.plant("mssql-connection-string", '  warehouse: "Server=tcp:dw.acme.local,1433;Database=reports;User Id=reporter;Password=' + rand(B62, 20) + ';TrustServerCertificate=true"')
d.add("  cache-token-header: X-Cache-Token", "  request-id: " + uuid(), "")
docs.append(d)

d = Doc("code/.github/workflows/deploy.yml")
d.add("name: deploy", "on:", "  push:", "    branches: [main]", "jobs:", "  deploy:", "    runs-on: ubuntu-latest",
      "    env:", "      NPM_TOKEN: ${{ secrets.NPM_TOKEN }}", "      AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}")
d.plant("netlify-token", "      NETLIFY_AUTH_TOKEN: nfp_" + rand(B62, 36))
d.add("      NETLIFY_SITE_ID: " + uuid(), "    steps:", "      - uses: actions/checkout@" + rand(HEX, 40),
      "      - run: npm ci", "      - run: npx netlify deploy --prod", "      - name: notify")
d.plant("discord-webhook-url", "        run: curl -H 'Content-Type: application/json' -d '{\"content\":\"deployed\"}' https://discord.com/api/webhooks/" + rand(string.digits, 19) + "/" + rand(URL, 68))
d.add("")
docs.append(d)

d = Doc("configs/.pypirc")
d.add("[distutils]", "index-servers =", "    pypi", "    internal", "", "[pypi]", "username = __token__")
d.plant("pypi-upload-token", "password = pypi-AgEIcHlwaS5vcmc" + rand(URL, 140))
d.add("", "[internal]", "repository = https://pypi.acme.dev/", "username = deploy")
d.plant("generic-password", "password = " + rand(B62, 11) + "%" + rand(B62, 6))
d.add("")
docs.append(d)

d = Doc("code/notebooks/embeddings.py")
d.add("# %% setup", "import os", "import numpy as np", "")
d.plant("huggingface-token", 'os.environ["HF_TOKEN"] = "hf_' + rand(string.ascii_letters, 34) + '"')
d.plant("wandb-api-key", 'WANDB_API_KEY = "' + rand(HEX, 40) + '"')
d.plant("mistral-api-key", 'MISTRAL_API_KEY = "' + rand(B62, 32) + '"')
d.add('MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"', 'EMBED_DIM = 384',
      'CHECKSUM = "' + rand(HEX, 64) + '"', "", "# %% load",
      "tokens = tokenizer(texts, padding=True, truncation=True)", "token_ids = tokens[\"input_ids\"]",
      "secret_sauce = np.linspace(0, 1, EMBED_DIM)", "")
docs.append(d)

d = Doc("chats/support-widget.log")
d.add("[2026-03-05 14:02] visitor: hi, our shopify sync stopped", "[2026-03-05 14:02] agent(tom): can you share the app token you configured?")
d.plant("shopify-access-token", "[2026-03-05 14:03] visitor: sure it's shpat_" + rand(HEX, 32))
d.add("[2026-03-05 14:04] agent(tom): thanks, please rotate it after we're done. order #" + rand(string.digits, 7) + " is the one failing?",
      "[2026-03-05 14:05] visitor: yes, tracking 1Z" + rand(string.ascii_uppercase + string.digits, 16) + ", coupon SPRING25-" + rand(string.ascii_uppercase, 5),
      "[2026-03-05 14:06] visitor: also our mailchimp integration, key:")
d.plant("mailchimp-api-key", "[2026-03-05 14:06] visitor: " + rand(HEX, 32) + "-us21")
d.add("[2026-03-05 14:07] agent(tom): got it. For hubspot we need the private app token, it starts with pat-na1-")
d.plant("hubspot-private-app-token", "[2026-03-05 14:09] visitor: pat-na1-" + uuid())
d.add("[2026-03-05 14:10] agent(tom): session " + rand(HEX, 32) + " closed. password reset link sent to your email.", "")
docs.append(d)

d = Doc("logs/worker.log")
d.add("2026-03-06 02:00:01,114 INFO  worker: starting 8 threads",
      "2026-03-06 02:00:03,877 ERROR worker: TokenExpiredError: token expired at 2026-03-06T01:59:59Z",
      "Traceback (most recent call last):", '  File "/app/worker/auth.py", line 88, in refresh',
      "    token = self._client.refresh(self._refresh_token)",
      "oauthlib.oauth2.rfc6749.errors.InvalidGrantError: (invalid_grant) refresh token revoked",
      "2026-03-06 02:00:04,002 INFO  worker: password policy check passed for user_id=" + rand(string.digits, 6))
d.plant("gcp-oauth-refresh-token", '2026-03-06 02:00:04,010 DEBUG worker: retry with {"refresh_token": "1//0' + rand(URL, 100) + '"}')
d.plant("gcp-oauth-access-token", "2026-03-06 02:00:04,511 DEBUG worker: got access token ya29.a0" + rand(URL, 160))
d.add("2026-03-06 02:00:05,000 INFO  worker: secret rotation scheduled (secret_id=" + uuid() + ")",
      "2026-03-06 02:00:05,120 DEBUG worker: api_key=*** masked", "")
d.plant("sendgrid-api-key", "2026-03-06 02:00:06,001 ERROR mailer: 401 from sendgrid with key SG." + rand(URL, 22) + "." + rand(URL, 43))
d.add("")
docs.append(d)

# --- one more document of each kind, with every decoy category ---------------
# Each holds, next to its secrets: a placeholder, a documented example key, a
# hash, a UUID, a base64 blob, a checksum-invalid token and a public key or
# certificate. A fresh random stream, so the documents above stay as they were.
rng = random.Random(4242)

def wrap(text, width=64, indent=""):
    return [indent + text[i:i + width] for i in range(0, len(text), width)]

def ssh_ed25519_pub():
    return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + b64bytes(32)[1:44]

def jwk_modulus():
    return b64u(bytes(rng.getrandbits(8) for _ in range(256)))

def bcrypt_hash():
    return "$2b$12$" + rand(B62 + "./", 53, edges=False)

# Published examples: AWS's documentation key pair, jwt.io's sample token (HS256,
# secret "your-256-bit-secret"), the token in GitHub's REST API docs (its
# checksum does not match), GitHub's own SSH host key.
AWS_DOC_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
JWT_IO_EXAMPLE = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
                  ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
GITHUB_DOCS_TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

d = Doc("tickets/SUP-4290.md")
d.add("# SUP-4290: offboarding, rotate what the contractor could reach", "",
      "**Reporter:** sec@acme.dev  ", "**Linked incident:** INC-" + uuid() + "  ", "",
      "Inventory from their laptop export (pasted so we can confirm each one is revoked):", "",
      "| system | credential |", "|---|---|")
d.plant("github-oauth-token", "| GitHub OAuth app | `" + crc_token("gho_") + "` |")
d.plant("slack-user-token", "| Slack (user) | `xoxp-" + rand(string.digits, 11) + "-" + rand(string.digits, 12) + "-"
        + rand(string.digits, 13) + "-" + rand(HEX, 32) + "` |")
d.plant("stripe-restricted-key", "| Stripe (restricted, reporting) | `rk_live_" + rand(B62, 99) + "` |")
d.plant("tailscale-key", "| Tailscale | `tskey-auth-" + rand(B62, 17) + "-" + rand(B62, 32) + "` |")
d.plant("newrelic-user-api-key", "| New Relic | `NRAK-" + rand(string.ascii_uppercase + string.digits, 27) + "` |")
d.add("| Vault | `<vault token, ask Priya>` |", "| Stripe (full) | `sk_live_************************` |", "",
      "Their SSH public key, to remove from `authorized_keys` everywhere:", "",
      "    " + ssh_ed25519_pub() + " contractor@laptop", "",
      "Their notes also had `" + GITHUB_DOCS_TOKEN + "`, which is the example token from GitHub's REST docs,",
      "and `" + AWS_DOC_KEY_ID + "` from the AWS CLI guide. Their personal token",
      "(" + crc_token("ghp_", valid=False) + ") was revoked last week; one character was mistyped in the export.", "",
      "First block of the export, base64 (the rest is attached):", "", "```")
d.add(*wrap(b64bytes(180), 76))
d.add("```", "", "SHA-256 of the full export: " + rand(HEX, 64), "Password hash from their account row: " + bcrypt_hash(),
      "Last webhook they received: `X-Hub-Signature-256: sha256=" + rand(HEX, 64) + "`", "",
      "Their local compose override (still on the shared drive):", "", "```yaml")
d.plant("generic-password", "  grafana_admin_password: " + rand(string.ascii_letters, 7) + "!" + rand(string.ascii_letters, 6) + "-" + rand(string.ascii_letters, 5))
d.add("```", "")
docs.append(d)

d = Doc("chats/sre-oncall-2026-03-09.txt")
d.add("[14:01] <ana> paging: payments-sync fails auth since the rotation",
      "[14:02] <ben> which key does it run with now?",
      "[14:02] <ana> the runbook says AWS_ACCESS_KEY_ID=" + AWS_DOC_KEY_ID,
      "[14:03] <ben> that's the docs example lol. the real pair is in vault, here:")
d.plant("aws-access-key-id", "[14:03] <ben> aws_access_key_id=AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))
d.plant("aws-secret-access-key", "[14:03] <ben> aws_secret_access_key=" + rand(B64, 40))
d.add("[14:05] <ana> opened incident " + uuid(),
      "[14:06] <cho> the github token pasted here last week (" + crc_token("ghp_", valid=False) + ") is dead, checksum is off anyway",
      "[14:07] <cho> new deploy key, public half only: ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + rand(B64, 340) + " deploy@ci")
d.plant("sentry-org-token", "[14:08] <ben> release step needs SENTRY_AUTH_TOKEN=sntrys_eyJ" + rand(B62, 120) + "_" + rand(B62 + "+/", 43))
d.add("[14:09] <ana> the new-hire doc still says token: <paste here>, I'll fix it",
      "[14:10] <cho> config blob base64'd so the client doesn't mangle it: " + b64bytes(150))
d.plant("grafana-service-account-token", "[14:11] <cho> grafana sa token for the dashboards: glsa_" + rand(B62, 32) + "_" + rand(HEX, 8))
d.plant("algolia-admin-key", "[14:12] <cho> and the algolia admin key for the reindex job is " + rand(HEX, 32))
d.add("[14:12] <ben> the slack docs show bot tokens like xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy, ours is in vault",
      "[14:13] <ben> deployed image sha256:" + rand(HEX, 64), "[14:14] <ana> resolved", "")
docs.append(d)

d = Doc("code/api/jwks_test.go")
d.add("package api", "", "import (", '\t"strings"', '\t"testing"', ")", "",
      "// Public half of the test signing key: safe to commit.", "const testPublicKeyPEM = `" + pem_lines("PUBLIC KEY", 294)[0])
d.add(*pem_lines("PUBLIC KEY", 294)[1:])
d.lines[-1] += "`"
d.add("", "// The issuer's JWKS (public).",
      'var jwks = `{"keys":[{"kty":"RSA","kid":"' + rand(HEX, 16) + '","use":"sig","alg":"RS256","n":"' + jwk_modulus() + '","e":"AQAB"}]}`', "",
      "// jwt.io's example: HS256 signed with \"your-256-bit-secret\".",
      'const jwtIOExample = "' + JWT_IO_EXAMPLE + '"', "",
      "// Deliberately mistyped: the checksum must reject it.",
      'const badInstallationToken = "' + crc_token("ghs_", valid=False) + '"', "",
      'var placeholderToken = "ghp_" + strings.Repeat("x", 36)', "",
      'const fixtureDigest = "sha256-' + b64bytes(32) + '"',
      'const traceID = "' + uuid() + '"',
      'const emptyArchive = "H4sIAAAAAAAA/' + b64bytes(120) + '"', "",
      "func TestVerifyStagingToken(t *testing.T) {",
      "\t// captured from staging on 2026-03-01; valid until 2027")
d.plant("jwt", '\ttok := "' + jwt({"alg": "RS256", "typ": "JWT", "kid": rand(HEX, 16)},
                                     {"iss": "https://auth.acme.dev/", "sub": "svc-payments", "aud": "payments",
                                      "exp": 1803000000, "iat": 1772000000}, 342) + '"')
d.add("\tif _, err := verify(tok, jwks); err != nil {", "\t\tt.Fatal(err)", "\t}", "}", "",
      "func TestWebhookSignature(t *testing.T) {")
d.plant("stripe-webhook-secret", '\tsecret := "whsec_' + rand(B62, 32) + '"')
d.add("\t_ = secret", "}", "")
d.plant("mysql-connection-string", 'const integrationDSN = "mysql://payments:' + rand(B62, 20) + '@tcp(mysql.ci.internal:3306)/payments"')
d.plant("generic-secret", 'const forecastURL = "https://api.weatherlink.example/v2/forecast?api_key=' + rand(B62, 32) + '&units=metric"')
d.add("", "// Publishable: meant to ship to browsers.", 'const stripePublishableKey = "pk_live_' + rand(B62, 99) + '"', "")
docs.append(d)

d = Doc("configs/k8s/payments.yaml")
d.add("apiVersion: v1", "kind: Secret", "metadata:", "  name: payments-env", "type: Opaque", "stringData:")
d.plant("stripe-secret-key", "  STRIPE_API_KEY: sk_live_" + rand(B62, 99))
d.plant("slack-webhook-url", "  SLACK_WEBHOOK_URL: https://hooks.slack.com/services/T" + rand(string.ascii_uppercase + string.digits, 8)
        + "/B" + rand(string.ascii_uppercase + string.digits, 10) + "/" + rand(B62, 24))
d.plant("doppler-token", "  DOPPLER_TOKEN: dp.st.prd." + rand(B62, 43))
d.add('  DB_PASSWORD: "<set-me>"', "  SMTP_PASSWORD: ${SMTP_PASSWORD}", "---", "apiVersion: v1", "kind: ConfigMap",
      "metadata:", "  name: payments-trust", "data:", "  ca.crt: |")
d.add(*["    " + l for l in pem_lines("CERTIFICATE", 700)])
d.add("  known_hosts: |", "    github.com " + GITHUB_HOST_KEY, "binaryData:",
      "  logo.png: iVBORw0KGgoAAAANSUhEUgAA" + b64bytes(240), "---", "apiVersion: apps/v1", "kind: Deployment",
      "metadata:", "  name: payments", "spec:", "  template:", "    spec:", "      containers:", "      - name: api",
      "        image: ghcr.io/acme/payments@sha256:" + rand(HEX, 64), "        env:",
      "        - name: AWS_ACCESS_KEY_ID", "          value: " + AWS_DOC_KEY_ID + "  # SDK docs example, replaced at deploy",
      "        - name: REQUEST_ID_NAMESPACE", '          value: "' + uuid() + '"',
      "        - name: NPM_TOKEN", "          value: " + crc_token("npm_", valid=False) + "  # stale, mistyped",
      "        - name: GITHUB_TOKEN", "          valueFrom:", "            secretKeyRef: {name: payments-env, key: GITHUB_TOKEN}",
      "---", "apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: payments-oidc", "data:",
      "  OIDC_ISSUER: https://auth.acme.dev/",
      "  OIDC_TOKEN_VERIFY_KEY: " + base64.b64encode(base64.b64decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
                                                      + bytes(rng.getrandbits(8) for _ in range(64))).decode(),
      "---", "# group_vars/payments.yml (Ansible)", "payments_db_password: !vault |", "  $ANSIBLE_VAULT;1.1;AES256")
d.add(*wrap(rand(HEX, 320), 80, "  "))
d.add("---", "# netrc mounted for the release job", "apiVersion: v1", "kind: Secret", "metadata:", "  name: release-netrc",
      "stringData:", "  .netrc: |")
d.plant("netrc-credentials", "    machine api.heroku.com login release@acme.dev password " + uuid())
d.add("")
docs.append(d)

d = Doc("logs/auth-service.log")
def alog(level, msg):
    return f"2026-03-08T09:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}Z {level:5} auth {msg}"
d.add(alog("INFO", "starting, jwks_uri=https://auth.acme.dev/.well-known/jwks.json"),
      alog("DEBUG", "jwks: fetched kid=" + rand(HEX, 16) + " kty=RSA n=" + jwk_modulus() + " e=AQAB"),
      alog("DEBUG", "request body (base64): " + b64bytes(180)),
      alog("WARN", "rejected token " + crc_token("ghp_", valid=False) + ": checksum mismatch"),
      alog("INFO", "aws sdk: credentials from environment (access key " + AWS_DOC_KEY_ID + ")"))
d.plant("github-server-to-server-token", alog("DEBUG", "outbound: Authorization: Bearer " + crc_token("ghs_")))
d.add(alog("DEBUG", "outbound: Authorization: Bearer *****"),
      alog("ERROR", "session " + uuid() + " login failed password=[REDACTED]"))
d.plant("postmark-server-token", alog("DEBUG", "mailer: POSTMARK_SERVER_TOKEN=" + uuid()))
d.add(alog("DEBUG", "verify: stored hash " + bcrypt_hash()),
      alog("INFO", "cache key sha1=" + rand(HEX, 40)))
d.plant("okta-api-token", alog("DEBUG", "okta: GET /api/v1/users Authorization: SSWS 00" + rand(URL, 40)))
d.add(alog("INFO", "shutting down"), "")
docs.append(d)


labels = []
for doc in docs:
    labels.extend(doc.write())
with open(os.path.join(HERE, "labels.json"), "w") as f:
    json.dump(labels, f, indent=1)
    f.write("\n")
print(f"{len(docs)} files, {len(labels)} labeled secrets")
