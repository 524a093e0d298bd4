//! The remote check: an OpenID AuthZEN 1.0 evaluation at Leash.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Credentials;

/// The resource an action is on (`{"type": "repo", "id": "acme/api"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Resource {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// Leash's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why (from the decision's context), when Leash said.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DecisionBody {
    decision: bool,
    #[serde(default)]
    context: serde_json::Value,
}

/// Why no decision came back.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("cannot reach Leash at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("Leash refused the evaluation request ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("Leash's answer is not an AuthZEN decision: {0}")]
    BadAnswer(String),
}

pub(crate) async fn evaluate(
    http: &reqwest::Client,
    base_url: &str,
    creds: &Credentials,
    token: &str,
    workload: &str,
    action: &str,
    resource: &Resource,
) -> Result<Decision, AuthorizeError> {
    let url = format!("{}/access/v1/evaluation", base_url.trim_end_matches('/'));
    let body = json!({
        "subject": {"type": "workload", "id": workload, "properties": {"token": token}},
        "action": {"name": action},
        "resource": resource,
    });
    let resp = creds
        .apply(http.post(&url))
        .timeout(std::time::Duration::from_secs(5))
        .json(&body)
        .send()
        .await
        .map_err(|e| AuthorizeError::Unreachable {
            url: url.clone(),
            why: e.to_string(),
        })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| AuthorizeError::Unreachable {
        url: url.clone(),
        why: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(AuthorizeError::Refused {
            status: status.as_u16(),
            detail: text.chars().take(300).collect(),
        });
    }
    let d: DecisionBody =
        serde_json::from_str(&text).map_err(|e| AuthorizeError::BadAnswer(e.to_string()))?;
    let reason = d
        .context
        .get("reason")
        .and_then(|r| r.as_str())
        .map(str::to_owned);
    Ok(Decision {
        allowed: d.decision,
        reason,
    })
}
