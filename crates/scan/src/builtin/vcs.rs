//! Source hosting, CI/CD, package registries and secret managers.

use super::Spec;
use crate::rule::Check;

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["ghp_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &[
            "GITHUB_TOKEN=ghp_RBOjBezAXqRHLkBtjy1HUqizjUFXzz%CRC%",
            "git clone https://x-access-token:ghp_sYqyDT7jW7lPm9eNTSVnJ6POwwVMG6%CRC%@github.com/acme/api.git",
        ],
        negatives: &[
            "GITHUB_TOKEN=ghp_H0rSnjSnV4JYGQ67g5jJhkeOz396Os%BAD%",
            "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ],
        ..Spec::new(
            "github-pat",
            "GitHub personal access token (classic, checksum valid)",
            r"\b(?P<secret>ghp_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["gho_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &["oauth_token: gho_oWdxquzrS75b1I8s1pNRj1d6QCcSyT%CRC%"],
        negatives: &["oauth_token: gho_FfOrjriisdwUV5wFqoNeJTTO0EeDxF%BAD%"],
        ..Spec::new(
            "github-oauth-token",
            "GitHub OAuth access token (checksum valid)",
            r"\b(?P<secret>gho_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["ghu_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &["token ghu_LL4kXLsUAgis09sxYJzG0gAr57w3De%CRC%"],
        negatives: &["token ghu_VN2xfpj5gtUEKZAiB2kVAxllHtIeXp%BAD%"],
        ..Spec::new(
            "github-user-to-server-token",
            "GitHub App user-to-server token (checksum valid)",
            r"\b(?P<secret>ghu_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["ghs_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &["GH_INSTALLATION_TOKEN=ghs_QYW6fV8kLYE4c9KR0DAoHRWe2QsB2R%CRC%"],
        negatives: &["GH_INSTALLATION_TOKEN=ghs_LbPiXVCWSpiaiK876p1IM2tSibE76Z%BAD%"],
        ..Spec::new(
            "github-server-to-server-token",
            "GitHub App installation (server-to-server) token (checksum valid)",
            r"\b(?P<secret>ghs_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["ghr_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &["refresh_token=ghr_BQDnYnJbBpQEsXOCG4hX29P6oEVBto%CRC%"],
        negatives: &["refresh_token=ghr_FmUrPbbHBsaVjGG8Mp1LFQUjC4pO0r%BAD%"],
        ..Spec::new(
            "github-refresh-token",
            "GitHub refresh token (checksum valid)",
            r"\b(?P<secret>ghr_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["github_pat_"],
        entropy: Some(3.5),
        positives: &[
            "GITHUB_TOKEN=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",
        ],
        negatives: &[
            "GITHUB_TOKEN=github_pat_<fine-grained-token>",
            "github_pat_UXH18Jk45JJH1XEvO8Yixi",
        ],
        ..Spec::new(
            "github-fine-grained-pat",
            "GitHub fine-grained personal access token",
            r"\b(?P<secret>github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59})\b",
        )
    },
    Spec {
        keywords: &["glpat-"],
        entropy: Some(3.5),
        positives: &[
            "GITLAB_TOKEN=glpat-2hBoYl5BwnirkxZ1W8sI",
            "private-token: glpat-ZoaXq3zQ9xGfnNCQIzJjuaKvQEk.01.kr096n67v",
        ],
        negatives: &["GITLAB_TOKEN=glpat-xxxxxxxxxxxxxxxxxxxx", "glpat-QGmD9NJA"],
        ..Spec::new(
            "gitlab-pat",
            "GitLab personal, project or group access token",
            r"\b(?P<secret>glpat-[0-9A-Za-z_-]{20,300}(?:\.[0-9a-z]{2}\.[0-9a-z]{9})?)(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glrt-"],
        entropy: Some(3.5),
        positives: &[
            "runner token: glrt-GLjLkaQod0_SHhY1tKVU",
            "token = \"glrt-t1_30iv14tpwPyJlPd1lApZbvmqzDP.01.0xwizstxa\"",
        ],
        negatives: &["token = \"glrt-<runner-token>\""],
        ..Spec::new(
            "gitlab-runner-token",
            "GitLab runner authentication token",
            r"\b(?P<secret>glrt-(?:t\d_)?[0-9A-Za-z_-]{20,300}(?:\.[0-9a-z]{2}\.[0-9a-z]{9})?)(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["gr1348941"],
        positives: &["gitlab-runner register --registration-token GR1348941lXIYDKGC_7b_KPtrfkGx"],
        negatives: &["gitlab-runner register --registration-token GR1348941"],
        ..Spec::new(
            "gitlab-runner-registration-token",
            "GitLab runner registration token",
            r"\b(?P<secret>GR1348941[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["gldt-"],
        positives: &["CI_DEPLOY_PASSWORD=gldt-soatGUtbdmtfgmgYgKQ7"],
        negatives: &["CI_DEPLOY_PASSWORD=gldt-bEZ6eSJ0"],
        ..Spec::new(
            "gitlab-deploy-token",
            "GitLab deploy token",
            r"\b(?P<secret>gldt-[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glptt-"],
        positives: &[
            "curl -F token=glptt-c10623cc6ab8fae2aff1958ae1eace966ccd4dac -F ref=main https://gitlab.acme.dev/api/v4/projects/7/trigger/pipeline",
        ],
        negatives: &["token=glptt-2ea61d7490649911d701"],
        ..Spec::new(
            "gitlab-pipeline-trigger-token",
            "GitLab pipeline trigger token",
            r"\b(?P<secret>glptt-[0-9a-f]{40})\b",
        )
    },
    Spec {
        keywords: &["gloas-"],
        positives: &[
            "client_secret: gloas-cf3c76fe6014f1b76d0ca7ad96812eb66e269bec033c2a1a595de5432871008c",
        ],
        negatives: &["client_secret: gloas-3a3aeb452acd5044b399f27e1ee535"],
        ..Spec::new(
            "gitlab-oauth-app-secret",
            "GitLab OAuth application secret",
            r"\b(?P<secret>gloas-[0-9A-Za-z_-]{64})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glcbt-"],
        positives: &["CI_JOB_TOKEN=glcbt-yK_kqrviOpqh_CN5JowE_5Y"],
        negatives: &["CI_JOB_TOKEN=glcbt-<job-token>"],
        ..Spec::new(
            "gitlab-cicd-job-token",
            "GitLab CI/CD job token",
            r"\b(?P<secret>glcbt-[0-9A-Za-z]{1,5}_[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glsoat-"],
        positives: &["scim_token: glsoat-y8TMuKVYq46gS5-DE2he"],
        negatives: &["scim_token: glsoat-IQMzCf"],
        ..Spec::new(
            "gitlab-scim-token",
            "GitLab SCIM token",
            r"\b(?P<secret>glsoat-[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glimt-"],
        positives: &["incoming_email_token: glimt-vSjAkGN1tidnIO-ppBiQXXh6q"],
        negatives: &["incoming_email_token: glimt-y06uS6T09"],
        ..Spec::new(
            "gitlab-incoming-mail-token",
            "GitLab incoming mail token",
            r"\b(?P<secret>glimt-[0-9A-Za-z_-]{25})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["glagent-"],
        positives: &["agent_token: glagent-cuCWM7QIXQEIi4xQRAac0jPNZ8uttgM9huqr2vhnoA5wRhR-dC"],
        negatives: &["agent_token: glagent-yhlftliLnWbMIuhVlx4d"],
        ..Spec::new(
            "gitlab-agent-token",
            "GitLab agent for Kubernetes token",
            r"\b(?P<secret>glagent-[0-9A-Za-z_-]{50})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["atbb"],
        entropy: Some(3.5),
        positives: &["BITBUCKET_APP_PASSWORD=ATBBQxS1tsuyZ8SN0cq7zTyLDqiBcPzp9oLq"],
        negatives: &["BITBUCKET_APP_PASSWORD=ATBB8fS2YSq3es"],
        ..Spec::new(
            "bitbucket-app-password",
            "Bitbucket app password / API token",
            r"\b(?P<secret>ATBB[A-Za-z0-9_=-]{32,64})(?:[^\w=-]|$)",
        )
    },
    Spec {
        keywords: &["bitbucket"],
        entropy: Some(3.5),
        positives: &["BITBUCKET_CLIENT_SECRET=T2WPHllWNeLRVuU7tPg0VvcN6OEukRMP"],
        negatives: &[
            "BITBUCKET_CLIENT_ID=TmPVVSCm07Flcn0c4h",
            "BITBUCKET_CLIENT_SECRET=rFUZaGxPiEUrEsfV",
        ],
        ..Spec::new(
            "bitbucket-client-secret",
            "Bitbucket OAuth client secret (named in context)",
            r#"(?i:bitbucket[\w.-]{0,20}?(?:secret|password|token))["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[A-Za-z0-9_=-]{32,64})(?:[^\w=-]|$)"#,
        )
    },
    Spec {
        keywords: &["ccipat_"],
        positives: &[
            "CIRCLECI_TOKEN=CCIPAT_QT626r7tIXIX7AmF2mKHJR_fd377b001db5e39901d7f852ee5c9f967908674b",
        ],
        negatives: &["CIRCLECI_TOKEN=CCIPAT_cZsYop1KyV4aWgwKoXYq6m"],
        ..Spec::new(
            "circleci-personal-token",
            "CircleCI personal API token",
            r"\b(?P<secret>CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})\b",
        )
    },
    Spec {
        keywords: &["cciprj_"],
        positives: &[
            "Circle-Token: CCIPRJ_U9MovXJJt0c9CcxypjQz24_8140a24726972506058cf01c2085410c291d3343",
        ],
        negatives: &["Circle-Token: CCIPRJ_0db291d37e1923deefdcb22bd9a78da881463c6f"],
        ..Spec::new(
            "circleci-project-token",
            "CircleCI project API token",
            r"\b(?P<secret>CCIPRJ_[A-Za-z0-9]{22}_[a-f0-9]{40})\b",
        )
    },
    Spec {
        keywords: &["npm_"],
        entropy: None,
        check: Check::Crc32Base62,
        positives: &[
            "//registry.npmjs.org/:_authToken=npm_6wL5QVaM8ozJgnT425VW6gj92fN5PP%CRC%",
            "NPM_TOKEN=npm_8b4IAhnw1oefAFf9bA4aI4ycpmtVVw%CRC%",
        ],
        negatives: &[
            "//registry.npmjs.org/:_authToken=npm_VTT862Bz0o2O6ADKpXzrLTenFfiY2z%BAD%",
            "//registry.npmjs.org/:_authToken=${NPM_TOKEN}",
        ],
        ..Spec::new(
            "npm-access-token",
            "npm access token (checksum valid)",
            r"\b(?P<secret>npm_[0-9A-Za-z]{36})\b",
        )
    },
    Spec {
        keywords: &["pypi-ageichlwas5vcmc", "pypi-agendgvzdc5wexbplm9yzw"],
        entropy: Some(4.0),
        positives: &[
            "password = pypi-AgEIcHlwaS5vcmcfHmU6C65XHIpnpybHIxCo659C4Z1bZKBujU90iKvQb38ZPrU9U4siWS4Ye7GO6N1j8-IRRnh3UFaIV9FuTUspww_qh82CVnJVS5NZHXWvWF8LJFKGToiCjrsA5rVzFFfQ8aHmnpvmiJkFWQdvGPuvHeVezfQmVcJ",
        ],
        negatives: &["password = pypi-AgEIcHlwaS5vcmc"],
        ..Spec::new(
            "pypi-upload-token",
            "PyPI (or TestPyPI) upload token",
            r"\b(?P<secret>pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})",
        )
    },
    Spec {
        keywords: &["dckr_pat_"],
        entropy: Some(3.5),
        positives: &[
            "echo dckr_pat_0hCPBKbbjOxHfVuq7iHB2GPyqnd | docker login -u acmebot --password-stdin",
        ],
        negatives: &["DOCKERHUB_TOKEN=dckr_pat_T3I7uIwL"],
        ..Spec::new(
            "dockerhub-pat",
            "Docker Hub personal access token",
            r"\b(?P<secret>dckr_pat_[A-Za-z0-9_-]{27,})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["dckr_oat_"],
        entropy: Some(3.5),
        positives: &["DOCKERHUB_ORG_TOKEN=dckr_oat_Qo3UrUQIXhfJ_3TTyjCUL2yZSA8iPUdt"],
        negatives: &["DOCKERHUB_ORG_TOKEN=dckr_oat_"],
        ..Spec::new(
            "dockerhub-org-token",
            "Docker Hub organization access token",
            r"\b(?P<secret>dckr_oat_[A-Za-z0-9_-]{27,})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["atlasv1"],
        entropy: Some(3.5),
        positives: &[
            r#"credentials "app.terraform.io" { token = "WIIVjgglFrEEZS.atlasv1.1BaClfmzh7lCAFz4kX_7o8I6zghT_Cu_7dEI2HpUxOaJIR5MuYf1Rc6h3OhKe3DM-wV" }"#,
        ],
        negatives: &[r#"token = "2s54e3ffHH8u0k.atlasv1.""#],
        ..Spec::new(
            "terraform-cloud-token",
            "Terraform Cloud / Enterprise API token",
            r"\b(?P<secret>[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70})(?:[^\w=-]|$)",
        )
    },
    Spec {
        keywords: &["hvs."],
        entropy: Some(3.5),
        positives: &[
            "VAULT_TOKEN=hvs.zkyspPQOI6qMF3hTyxqeE1E9jC1gdmv8j4u0u8omszc8F9CM9v9UmjOkWR7OqXHNynomW-4x_RX6xO2Txb3ijGuI4m9gZHM",
        ],
        negatives: &["VAULT_TOKEN=hvs.jXGLEnY3LVtd5yaFXXTWZINb"],
        ..Spec::new(
            "vault-service-token",
            "HashiCorp Vault service token",
            r"\b(?P<secret>hvs\.[A-Za-z0-9_-]{90,120})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["hvb."],
        entropy: Some(3.5),
        positives: &[
            "X-Vault-Token: hvb.7Jwhzairxnu15qzyzREYsa4GQ1_FRJDniThGN_1EXMCgNp1Vp_kVCY9Ugq3Kgo-liy6RXGZeMFsUP3qR9s6Nf4QZR_OY6P8dHhvYl-cxsjROmPa45BcUmBkK4eVq8L0VFEsJCWGYe4-Ntegy2Tu_wH73ceyDGmYA",
        ],
        negatives: &["X-Vault-Token: hvb.IYXC4iMoRvZ8ag3rvpo9Wfl2ye0qNr5DwlVyCMSb"],
        ..Spec::new(
            "vault-batch-token",
            "HashiCorp Vault batch token",
            r"\b(?P<secret>hvb\.[A-Za-z0-9_-]{138,300})(?:[^\w-]|$)",
        )
    },
    Spec {
        keywords: &["vault"],
        entropy: Some(3.5),
        positives: &["VAULT_TOKEN=s.PsJHITcmO6jRQNQ3qIKkQQaV"],
        negatives: &[
            "VAULT_ADDR=https://vault.acme.dev:8200",
            "VAULT_TOKEN=s.ApQStHFwzdslDfbRAZBAgupux",
        ],
        ..Spec::new(
            "vault-legacy-token",
            "HashiCorp Vault token, pre-1.10 format (named in context)",
            r#"(?i:vault[\w.-]{0,20}?token)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>s\.[A-Za-z0-9]{24})\b"#,
        )
    },
    Spec {
        keywords: &["akcp"],
        entropy: Some(4.0),
        positives: &[
            "ARTIFACTORY_API_KEY=AKCp0bfbK1SiY2TCuPnEdBJD03YzaMiI0FXnvfqxBeSUTm3uDSsdy8GgEDNfvE5D4uxMs3FV1",
        ],
        negatives: &["ARTIFACTORY_API_KEY=AKCp9eSs5TBUwO7bNNeAVvCLrrw1zZVWif"],
        ..Spec::new(
            "jfrog-api-key",
            "JFrog Artifactory API key",
            r"\b(?P<secret>AKCp[A-Za-z0-9]{69})\b",
        )
    },
    Spec {
        keywords: &["cmvmdgtuojaxoj"],
        entropy: Some(4.0),
        positives: &[
            "JFROG_ACCESS_TOKEN=cmVmdGtuOjAxOjCHtEHn9VLgsR3lJ0o6f5aGyQLJMNHJReqPopCXeoz0aypvSqdT",
        ],
        negatives: &["JFROG_ACCESS_TOKEN=cmVmdGtuOjAxOj6DT7a8ZzPC"],
        ..Spec::new(
            "jfrog-reference-token",
            "JFrog reference (identity) token",
            r"\b(?P<secret>cmVmdGtuOjAxOj[A-Za-z0-9]{40,})\b",
        )
    },
    Spec {
        keywords: &["sqp_", "squ_", "sqa_"],
        positives: &[
            "SONAR_TOKEN=squ_bb73ef88a711314964fd42a6e9b31cd58d4b50f0",
            "sonar.login=sqp_fa05fc2a6836f57f89833c6ab4829219400a1ebf",
        ],
        negatives: &["SONAR_TOKEN=squ_371834e123b6e8a9b6ff"],
        ..Spec::new(
            "sonarqube-token",
            "SonarQube token",
            r"\b(?P<secret>sq[pua]_[a-f0-9]{40})\b",
        )
    },
    Spec {
        keywords: &["bkua_"],
        positives: &["BUILDKITE_API_TOKEN=bkua_bec6bd8a5b237b93a72a081745dfa899ea19bcca"],
        negatives: &["BUILDKITE_API_TOKEN=bkua_c9a026cc3bdf"],
        ..Spec::new(
            "buildkite-api-token",
            "Buildkite API access token",
            r"\b(?P<secret>bkua_[a-f0-9]{40})\b",
        )
    },
    Spec {
        keywords: &["pat.", "sat."],
        entropy: Some(3.5),
        positives: &[
            "HARNESS_API_KEY=pat.rsu5Nd_R2WTYKJYEAs0tCK.Qq8DZJmBKCfglsS0UmEryllj.9pMtLYcKnI1ufsoheu7C",
        ],
        negatives: &["from compat.wTo6yqlgxiq0h7ETmwPOT0 import x"],
        ..Spec::new(
            "harness-api-key",
            "Harness personal or service account token",
            r"\b(?P<secret>(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20})\b",
        )
    },
    Spec {
        keywords: &["api-"],
        entropy: Some(3.5),
        positives: &["OCTOPUS_API_KEY=API-WAJI6Y1ZGEXLZFR0C0UO9WT3CT"],
        negatives: &[
            "https://acme.dev/api-rh0ea5i8o1hevbjwmxldxve6kp",
            "API-Q7MNYB4EIL",
        ],
        ..Spec::new(
            "octopus-deploy-api-key",
            "Octopus Deploy API key",
            r"\b(?P<secret>API-[A-Z0-9]{26})\b",
        )
    },
    Spec {
        keywords: &["rubygems_"],
        positives: &["GEM_HOST_API_KEY=rubygems_c36dea5c5aeb7b253e5b268a1ba282ef6bf3105a258a65ad"],
        negatives: &["GEM_HOST_API_KEY=rubygems_0d7144b023102d1cddf7"],
        ..Spec::new(
            "rubygems-api-token",
            "RubyGems API key",
            r"\b(?P<secret>rubygems_[a-f0-9]{48})\b",
        )
    },
    Spec {
        keywords: &["oy2"],
        entropy: Some(3.5),
        positives: &[
            "dotnet nuget push pkg.nupkg --api-key oy2xc9z86i2v8tpzovinsr63gx7gikltkngn5l8bc7bu74",
        ],
        negatives: &["oy252u2w8e5si"],
        ..Spec::new(
            "nuget-api-key",
            "NuGet API key",
            r"\b(?P<secret>oy2[a-z0-9]{43})\b",
        )
    },
    Spec {
        keywords: &["clojars_"],
        positives: &[
            "CLOJARS_PASSWORD=CLOJARS_frpmn2ygr1ho9fig19tyzd60anv02j0wbtwcjsggnuxjpo6sonsiccbu4ktq",
        ],
        negatives: &["CLOJARS_PASSWORD=CLOJARS_bjtz7pmkcrtz59fd3lvx"],
        ..Spec::new(
            "clojars-api-token",
            "Clojars deploy token",
            r"\b(?P<secret>CLOJARS_[a-z0-9]{60})\b",
        )
    },
    Spec {
        keywords: &["cio"],
        entropy: Some(4.0),
        positives: &["CARGO_REGISTRY_TOKEN=ciobpcxonRGrewt8bTxM1I8NZw4DSEWfyxu"],
        negatives: &[
            "a preciousuiCBPNBj6Eq4NmhrUxN5GS3HsQd6BVra word",
            "CARGO_REGISTRY_TOKEN=ciop46LLTYsjYni",
        ],
        ..Spec::new(
            "crates-io-api-token",
            "crates.io API token",
            r"\b(?P<secret>cio[A-Za-z0-9]{32})\b",
        )
    },
    Spec {
        keywords: &["codecov"],
        positives: &["CODECOV_TOKEN=3635f8c5-0998-4ab0-a56f-bf6380912698"],
        negatives: &["CODECOV_URL=https://codecov.io"],
        ..Spec::new(
            "codecov-token",
            "Codecov upload token (named in context)",
            r#"(?i:codecov[\w.-]{0,20}?token)["']?\s{0,4}(?::=|=>|=|:)\s{0,4}["']?(?P<secret>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"#,
        )
    },
];
