//! Outbound calls after an exposure: owner notifications and revocation
//! connectors for third-party credentials.
//!
//! Both are signed webhooks: the body is JSON, `Leash-Signature: sha256=HEX`
//! is the HMAC-SHA256 of the raw body under the configured webhook secret
//! (when one is set), so receivers can tell Leash's calls from anyone
//! else's. Neither ever carries a secret: exposures travel as their redacted
//! excerpt and SHA-256 fingerprint.
//!
//! Notifications are queued and sent by one background task with retries,
//! so a slow receiver never slows detection or revocation; a full queue
//! drops the notification with an error log and a metric (the exposure and
//! its finding are already durable).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use leash_core::{Exposure, ExternalToken};
use tokio::sync::mpsc;

/// Header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "leash-signature";
/// Header naming the event kind.
pub const EVENT_HEADER: &str = "leash-event";
/// Notifications waiting to be sent before new ones are dropped.
const QUEUE: usize = 4096;
/// Delivery attempts per notification.
const ATTEMPTS: u32 = 4;

/// `sha256=HEX` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Check `presented` (`sha256=HEX`, or bare HEX) against the HMAC of `body`,
/// in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], presented: &str) -> bool {
    let hexpart = presented.strip_prefix("sha256=").unwrap_or(presented);
    let Ok(tag) = hex::decode(hexpart.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).is_ok()
}

/// A signed JSON POST; Ok when the receiver answered 2xx.
async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&[u8]>,
    event: &str,
    body: &serde_json::Value,
) -> Result<u16, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, event);
    if let Some(s) = secret {
        req = req.header(SIGNATURE_HEADER, signature(s, &bytes));
    }
    let shown = url_for_log(url);
    let resp = req
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("could not reach {shown}: {}", e.without_url()))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(status)
    } else {
        Err(format!("{shown} answered HTTP {status}"))
    }
}

/// A webhook URL as logs and audit events show it: scheme and host only.
/// Webhook URLs often carry a credential in their path or query (Slack
/// incoming webhooks, signed connector URLs), so the rest is never shown.
pub fn url_for_log(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            // drop userinfo too
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "(webhook URL)".into(),
    }
}

/// One message to an owner's webhook.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event: &'static str,
    pub body: serde_json::Value,
}

/// Sends owner notifications in the background.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notification>>,
}

impl Notifier {
    /// Start the sender task when `url` is set; otherwise notifications are dropped quietly.
    pub fn start(
        http: reqwest::Client,
        url: Option<String>,
        secret: Option<Arc<[u8]>>,
        metrics: crate::metrics::NotifyCounters,
    ) -> Notifier {
        let Some(url) = url else {
            return Notifier { tx: None };
        };
        let (tx, mut rx) = mpsc::channel::<Notification>(QUEUE);
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                let mut delay = Duration::from_millis(250);
                let mut outcome = Err(String::new());
                for attempt in 1..=ATTEMPTS {
                    outcome = post_signed(&http, &url, secret.as_deref(), n.event, &n.body).await;
                    if outcome.is_ok() {
                        break;
                    }
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
                match outcome {
                    Ok(_) => {
                        metrics.delivered.inc();
                    }
                    Err(e) => {
                        metrics.failed.inc();
                        tracing::error!(error = %e, event = n.event, "owner notification not delivered");
                    }
                };
            }
        });
        Notifier { tx: Some(tx) }
    }

    /// Queue a notification; never waits.
    pub fn send(&self, n: Notification) {
        if let Some(tx) = &self.tx
            && tx.try_send(n).is_err()
        {
            tracing::error!("owner notification queue is full; one notification was dropped");
        }
    }
}

/// What a connector did.
pub type ConnectorResult = Result<String, String>;

/// Revokes a third-party credential at its provider when it leaks.
pub trait RevocationConnector: Send + Sync {
    /// Revoke (or rotate) `token`, found in `exposure`. Ok carries a note
    /// for the audit log; Err says why it could not.
    fn revoke<'a>(
        &'a self,
        token: &'a ExternalToken,
        exposure: &'a Exposure,
    ) -> Pin<Box<dyn Future<Output = ConnectorResult> + Send + 'a>>;
}

/// The built-in connector: a signed JSON POST to a URL that does the
/// revocation (a small function in front of the provider's API). It sends
/// the token's name, kind and fingerprint, never the secret.
pub struct WebhookConnector {
    pub url: String,
    pub secret: Option<Arc<[u8]>>,
    pub http: reqwest::Client,
}

impl RevocationConnector for WebhookConnector {
    fn revoke<'a>(
        &'a self,
        token: &'a ExternalToken,
        exposure: &'a Exposure,
    ) -> Pin<Box<dyn Future<Output = ConnectorResult> + Send + 'a>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "action": "revoke",
                "external_token": {
                    "name": token.name,
                    "kind": token.kind,
                    "fingerprint": token.fingerprint,
                    "stored_in": token.stored_in,
                },
                "exposure": {
                    "id": exposure.id,
                    "source": exposure.source,
                    "location": exposure.location,
                    "detector": exposure.detector,
                },
            });
            post_signed(
                &self.http,
                &self.url,
                self.secret.as_deref(),
                "external.revoke",
                &body,
            )
            .await
            .map(|status| format!("{} answered HTTP {status}", url_for_log(&self.url)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_logged_without_path_query_or_userinfo() {
        assert_eq!(
            url_for_log("https://hooks.slack.com/services/T0/B0/s3cr3t?x=1"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(url_for_log("http://u:p@h:8080/x"), "http://h:8080/…");
        assert_eq!(url_for_log("garbage"), "(webhook URL)");
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let sig = signature(b"k", b"body");
        assert!(sig.starts_with("sha256="));
        assert!(verify_signature(b"k", b"body", &sig));
        assert!(!verify_signature(b"k", b"body!", &sig));
        assert!(!verify_signature(b"other", b"body", &sig));
        assert!(!verify_signature(b"k", b"body", "sha256=zz"));
    }
}
