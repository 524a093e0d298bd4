//! Leash's own tokens, and JWTs in general.

use super::Spec;
use crate::FindingKind;
use crate::rule::{Check, Tier};

/// A JWT: base64url header starting `{"`, payload, signature (empty for `alg: none`).
const JWT: &str = r"\b(?P<secret>eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)";

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        keywords: &["lsh_"],
        entropy: None,
        check: Check::LeashOpaque,
        tier: Tier::Leash,
        kind: FindingKind::LeashOpaque,
        positives: &[
            "LEASH_TOKEN=lsh_EzX50YEXsze1ztSq5wK9vOjk0BDK49CK%CRC%",
            "curl -H 'Authorization: Bearer lsh_Kg0iQRtmvnKxJkrRmVAM2klGngJX3yL8%CRC%' https://leash.internal/v1/whoami",
            "token was lsh_L7fmXbrdWmHoJdoqlAk9Fw0HvKhqUlpQ%CRC%.",
        ],
        negatives: &[
            "LEASH_TOKEN=lsh_nSmQb56sX1RsGuKPVWwmWtOIt1DK74kp%BAD%",
            "LEASH_TOKEN=lsh_RBFICMYDo0uL2p068L7B",
            "LEASH_TOKEN=xlsh_aw1fSUj0D2I8h56hndVji7riq2XLIN4a%CRC%",
        ],
        ..Spec::new(
            "leash-opaque",
            "Leash opaque token (checksum valid)",
            r"\b(?P<secret>lsh_[0-9A-Za-z]{38})\b",
        )
    },
    Spec {
        keywords: &["eyj"],
        entropy: None,
        check: Check::LeashJwt,
        tier: Tier::Leash,
        kind: FindingKind::LeashJwt,
        positives: &[
            "Authorization: Bearer eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImxlYXNoLXRlc3Qta2lkIn0.eyJpc3MiOiJodHRwczovL2xlYXNoLnRlc3QiLCJzdWIiOiJ3bF9zMDNqbjZ4NHhhIiwiYXVkIjoiZ2l0aHViIiwiZXhwIjoxODkzNDU2MDAwLCJpYXQiOjE4OTM0NTI0MDAsImp0aSI6InRva19sY0V0ZE9USk82NVFvdjF5RVZ1dk5mIiwic2NvcGUiOiJyZXBvOnJlYWQiLCJvd25lciI6ImFsaWNlIiwid29ya2xvYWQiOiJ0cmlhZ2UtYm90In0.om50IUIRJ5kTk2hGhXgdRSDSQzdQeIvNTrZpeHmq2Jw4POjDJ1MY43trOWSQ-p0GOAv6tPmkSQcO7Hk4V1wTcg",
        ],
        negatives: &[
            "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MjA4ODE4NDYiLCJuYW1lIjoic3ZjLWl0cHpzcCIsImlhdCI6MTc2MDAwMDAwMH0.sJblQI5tDNTNmSJ1LkI7JHLmA4BZ5cIiExISEmEJ-nX",
        ],
        ..Spec::new(
            "leash-jwt",
            "Leash JWT access token (recognised by the caller's key ring)",
            JWT,
        )
    },
    Spec {
        keywords: &["eyj"],
        entropy: Some(3.0),
        check: Check::Jwt,
        tier: Tier::Broad,
        positives: &[
            "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMzYzMjE4NzciLCJuYW1lIjoic3ZjLWR3YXNrbiIsImlhdCI6MTc2MDAwMDAwMH0.9yROgjZakIN4XD29zhme4lm48IXmuvTHVNyFjHCWEMO",
            r#"{"id_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjViNGZlMmIxOTI0MjNmMzUifQ.eyJpc3MiOiJodHRwczovL2F1dGguYWNtZS5kZXYvIiwic3ViIjoiYXV0aDB8MzIyODk1OWRkYjljYmMzYjAzMDJhYTY5IiwiZXhwIjoxNzkwMDAwMDAwfQ.fp2k-qFNa1Lx0cztaKrWbFKqVNHJBH02JJYFTdEx-SxhzGV8KqlZOwTdYgE89_MgUiiJGHHAJ5s_L-P-nR2iDn3HOc7W3yfSV0t2nqNN5oxHl3YczUXtiUwaZTCTKwaND3eUUuTVofms79zkLqxw5231nUGPfV5gE7VK-5Zaj3XtXFATlpQoZpd1LZTT2MdeIUVIpPjTJMccSC8UBhIwhyn8rbg2gB7SNrGpf6QpEpSdsr-HvQuXpVJPtYuTUJVNIJHDFHHbBrrIRlIF8SPYsuJXNBECxbBmL5q2OTrfNCjw9T5l8_cqcOP-B-y00XoDN6YfY2_-f3h6sm7HX2Sfut"}"#,
        ],
        negatives: &[
            "token=eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiI3ODExMzkzODYifQ.AjpauwRwJlSMg_wMj6HM3oBJ6F8zoAANUbFPfFddgt8",
            "token=eyJhbGciOiJub25lIn0.eyJzdWIiOiI4MzExMDUyMzUifQ.",
            "eyJub3QganNvbiBhdCBhbGw.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
            "Authorization: Bearer eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImxlYXNoLXRlc3Qta2lkIn0.eyJpc3MiOiJodHRwczovL2xlYXNoLnRlc3QiLCJzdWIiOiJ3bF9ndWkzdjQyeXU1IiwiYXVkIjoiZ2l0aHViIiwiZXhwIjoxODkzNDU2MDAwLCJpYXQiOjE4OTM0NTI0MDAsImp0aSI6InRva181S1R4ODdqYzZlSXZrc0JvbmxrdDdHIiwic2NvcGUiOiJyZXBvOnJlYWQiLCJvd25lciI6ImFsaWNlIiwid29ya2xvYWQiOiJ0cmlhZ2UtYm90In0.b2dAVoEg5O1AgOeZiLcbyNcMwVgv0jp7c1Kdc6byI0g1me1O88WNCoQXp_KTY9mLDyOAK0_6C3f0s2svzapkM5",
        ],
        ..Spec::new(
            "jwt",
            "JSON Web Token (header with alg, JSON payload, signature)",
            JWT,
        )
    },
];
