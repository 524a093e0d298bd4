//! Generic `key = value` assignments of passwords and secrets in code,
//! config and env files. Kept conservative: the value must look random
//! (entropy, mixed characters), and hashes, UUIDs, identifiers, paths,
//! references (`$VAR`, `${…}`) and placeholders are let through.

use super::Spec;
use crate::rule::{Check, Tier};

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["pass", "pwd"],
        entropy: None,
        check: Check::Generic { password: true },
        tier: Tier::Generic,
        positives: &[
            "DB_PASSWORD=hihBu3geZDq7Hg",
            r#"  "password": "W7#kd9!Lmq2vXz","#,
            "smtp_pass = 'Hq4-Tz8!pLw2'\nsmtp_password = 'Hq4-Tz8!pLw2'",
            r#"conn = psycopg2.connect(host="db", user="etl", password="v9LmQ2xT7kPz")"#,
            "  password: Ks8#Wq3!vNz7",
            "      RABBITMQ_DEFAULT_PASS: 9vKq2!mZw7Tx",
        ],
        negatives: &[
            "DB_PASSWORD=changeme",
            r#"password = os.environ["DB_PASSWORD"]"#,
            "password: ${DB_PASSWORD}",
            "password_hash = \"5f4dcc3b5aa765d61d8327deb882cf99\"",
            "password = getpass.getpass(prompt)",
            "PASSWORD_MIN_LENGTH = 12",
            "password: <your password here>",
            "password = self.password",
            "password: \"********\"",
            "bypass = cache_layer_v2",
            "    pass",
            "password = hash(user.salt + raw_input_value_2)",
            "user = User(username='scolvin', password='password1')",
            "if stack[-2] == 'password':\n    context.perl6_password_level += 1",
        ],
        ..Spec::new(
            "generic-password",
            "Password assigned in code, config or env",
            r#"(?i)(?P<key>[A-Za-z0-9_.-]*?(?:passw(?:or)?d|passphrase|pwd|(?:\b|[_.-])pass\b)[A-Za-z0-9_.-]*)["'`]?\]?[ \t]*(?::=|=>|=|:)[ \t]*(?:[A-Za-z]?["'`])?(?P<secret>[^\s"'`,;\\]{8,})(?:["'`,;\s)\]}]|$)"#,
        )
    },
    Spec {
        keywords: &[
            "secret",
            "api_key",
            "apikey",
            "api-key",
            "access_key",
            "access-key",
            "accesskey",
            "token",
            "credential",
            "creds",
            "private_key",
            "private-key",
        ],
        entropy: None,
        check: Check::Generic { password: false },
        tier: Tier::Generic,
        positives: &[
            "SECRET_KEY = 'bZBUlkfQDVtYNP0nN9pWbiGx0xsIKzTNEnL5wYCLWeUXPmY9UR'",
            "SECRET_KEY = 'x7#kQ(2mZ)9^vLp&4tW=-R8n+j*=JcYd'",
            "INTERNAL_API_TOKEN=cY927NxTg2Y6gREqQe0SVXwA4dLWNcdq",
            r#"{"client_secret": "VK5wcYMgstQy1LsE-vezvtIN-RqSXG11H20YRNYn"}"#,
            "    api_key: b52UPzWNtjXAdplhn8rbwecy",
            "export ACME_ACCESS_KEY=ioNUPobt3GNgmZXLHjHvBlhIrmh8",
        ],
        negatives: &[
            "SECRET_KEY = os.environ.get('SECRET_KEY')",
            "token_url: https://auth.acme.dev/oauth/token",
            "csrf_token = \"z5E78ePBRdiabh0kw59WSOwxoAaLEqdj\"",
            "api_key = \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"",
            "client_secret: \"af1c1e1e-378b-40f3-af6d-68da5645a755\"",
            "api_key: your_api_key_here",
            "token = tokens[0]",
            "SECRET_NAME=prod/payments/stripe",
            "secret_key_file: /etc/acme/secret.key",
            "token = ''.join(parts)",
            r#""Resource": "arn:aws:secretsmanager:*:*:secret:A4BNetworkProfile*""#,
            r#""AWS::IAM::AccessKey": "62d91b17309e76c8","#,
            "def sign(self, private_key: ed25519.Ed25519PrivateKey, data: bytes):",
            "def load(private_key: PKCS7PrivateKeyTypes, backend=None):",
            "new_token = f\"{log_group_name}@{stream_name}\"",
            "Authorization: AWS4-HMAC-SHA256 Credential=mock_access_key/20220524/us-east-1/s3/aws4_request",
        ],
        ..Spec::new(
            "generic-secret",
            "Secret, token or API key assigned in code, config or env",
            r#"(?i)(?P<key>[A-Za-z0-9_.-]*?(?:secret|api[_.-]?key|apikey|access[_.-]?key|token|credentials?|creds|private[_.-]?key)[A-Za-z0-9_.-]*)["'`]?\]?[ \t]*(?::=|=>|=|:)[ \t]*(?:[A-Za-z]?["'`])?(?P<secret>[^\s"'`,;\\]{16,})(?:["'`,;\s)\]}]|$)"#,
        )
    },
];
