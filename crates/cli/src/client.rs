//! The CLI's HTTP client for the Leash API.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where the server is and how to authenticate.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Find the operator credential: `LEASH_TOKEN`, then `$LEASH_DATA/operator.token`
/// (default `./.leash/operator.token`).
pub fn find_token(explicit: Option<String>) -> Option<String> {
    if let Some(t) = explicit.filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_owned());
    }
    let dir = std::env::var_os("LEASH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".leash"));
    std::fs::read_to_string(dir.join("operator.token"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same server, another credential (an owner's, for approvals).
    pub fn with_token(&self, token: String) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token),
        }
    }

    /// Call the API; a non-2xx answer becomes an error carrying the server's `detail`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    /// Send a text body (Cedar policies, sample files).
    pub async fn call_text<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: String,
    ) -> Result<T> {
        let req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        self.send(req).await
    }

    /// POST a raw body (an export file, a batch of log lines).
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let req = self
            .http
            .post(format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(req).await
    }

    /// GET a text document (a rendered report).
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let bytes = self
            .exchange(self.http.get(format!("{}{}", self.base, path)))
            .await?;
        String::from_utf8(bytes.to_vec()).context("the server answered with text that is not UTF-8")
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let bytes = self.exchange(req).await?;
        serde_json::from_slice(&bytes)
            .context("the server answered with a body that is not the expected JSON")
    }

    /// Send with the operator credential; a non-2xx answer becomes an error
    /// carrying the server's `detail`.
    async fn exchange(&self, mut req: reqwest::RequestBuilder) -> Result<bytes::Bytes> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach Leash at {}: {e}; start it with `leash serve` or set LEASH_URL",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the response")?;
        if status.is_success() {
            return Ok(bytes);
        }
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!(
                "no operator credential: set LEASH_TOKEN, or LEASH_DATA to the server's data directory (it holds operator.token)"
            );
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let detail = v
            .get("detail")
            .and_then(Value::as_str)
            .or_else(|| v.get("error_description").and_then(Value::as_str));
        match (detail, v.get("rule").and_then(Value::as_str)) {
            (Some(d), Some(rule)) => bail!("refused ({rule}): {d}"),
            (Some(d), None) => bail!("{d}"),
            (None, _) => bail!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
