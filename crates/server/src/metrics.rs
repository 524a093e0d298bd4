//! Prometheus metrics: mints, refusals by rule, revocations by trigger,
//! request latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabel {
    pub format: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub trigger: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExposureLabels {
    pub source: String,
    pub action: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
    ])
}

/// Every metric Leash exports.
pub struct Metrics {
    registry: Registry,
    pub mints: Family<FormatLabel, Counter>,
    pub refusals: Family<RuleLabel, Counter>,
    pub revocations: Family<TriggerLabel, Counter>,
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub exposures: Family<ExposureLabels, Counter>,
    /// Receipt of the text holding a Leash token → its revocation durable.
    pub exposure_revocation_seconds: Histogram,
    pub notifications: NotifyCounters,
    /// AuthZEN decisions that allowed.
    pub decisions_allowed: Counter,
    /// AuthZEN decisions that denied.
    pub decisions_denied: Counter,
    /// Decisions about a token this Leash does not know.
    pub decisions_unknown_token: Counter,
    /// Decisions refused because this replica could not vouch for its view.
    pub decisions_unvouched: Counter,
    /// Violations seen at decision time.
    pub violations: Counter,
    pub usage: crate::authz::usage::UsageCounters,
    /// Policy reloads refused (the old set stayed active).
    pub policy_reload_failures: Counter,
}

/// Owner notifications delivered and given up on.
#[derive(Clone, Default)]
pub struct NotifyCounters {
    pub delivered: Counter,
    pub failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("leash");
        let mints = Family::<FormatLabel, Counter>::default();
        let refusals = Family::<RuleLabel, Counter>::default();
        let revocations = Family::<TriggerLabel, Counter>::default();
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register("mints", "Tokens minted", mints.clone());
        registry.register(
            "mint_refusals",
            "Mints refused, by issuance rule",
            refusals.clone(),
        );
        registry.register(
            "revocations",
            "Tokens revoked, by trigger",
            revocations.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            requests.clone(),
        );
        let exposures = Family::<ExposureLabels, Counter>::default();
        registry.register(
            "exposures",
            "Leaked secrets recorded, by source and action",
            exposures.clone(),
        );
        let exposure_revocation_seconds = latency_histogram();
        registry.register(
            "exposure_revocation_seconds",
            "From receiving text that holds a live Leash token to its revocation being durable",
            exposure_revocation_seconds.clone(),
        );
        let notifications = NotifyCounters::default();
        registry.register(
            "notifications_delivered",
            "Owner notifications delivered",
            notifications.delivered.clone(),
        );
        registry.register(
            "notifications_failed",
            "Owner notifications given up after retries",
            notifications.failed.clone(),
        );
        let decisions_allowed = Counter::default();
        let decisions_denied = Counter::default();
        let decisions_unknown_token = Counter::default();
        let decisions_unvouched = Counter::default();
        let violations = Counter::default();
        let usage = crate::authz::usage::UsageCounters::default();
        let policy_reload_failures = Counter::default();
        for (name, help, c) in [
            (
                "decisions_allowed",
                "AuthZEN decisions that allowed",
                &decisions_allowed,
            ),
            (
                "decisions_denied",
                "AuthZEN decisions that denied",
                &decisions_denied,
            ),
            (
                "decisions_unknown_token",
                "AuthZEN decisions about a token this Leash did not issue",
                &decisions_unknown_token,
            ),
            (
                "decisions_unvouched",
                "Decisions refused because this replica was behind its shared database or NATS (fail closed)",
                &decisions_unvouched,
            ),
            (
                "violations",
                "Token violations seen at decision time",
                &violations,
            ),
            (
                "usage_recorded",
                "Decisions written to the usage aggregates",
                &usage.recorded,
            ),
            (
                "usage_dropped",
                "Usage records dropped because the queue was full",
                &usage.dropped,
            ),
            (
                "usage_raw_skipped",
                "Allowed decisions counted in aggregates but not kept in the raw log (rate bound)",
                &usage.raw_skipped,
            ),
            (
                "usage_write_failures",
                "Usage batches the store refused",
                &usage.write_failures,
            ),
            (
                "policy_reload_failures",
                "Policy reloads refused (the previous set stayed active)",
                &policy_reload_failures,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        Metrics {
            decisions_allowed,
            decisions_denied,
            decisions_unknown_token,
            decisions_unvouched,
            violations,
            usage,
            policy_reload_failures,
            registry,
            exposures,
            exposure_revocation_seconds,
            notifications,
            mints,
            refusals,
            revocations,
            requests,
        }
    }
}

impl Metrics {
    /// Count a revocation result.
    pub fn revoked(&self, r: &leash_store::Revoked) {
        if let Some(t) = r.trigger {
            let direct = r.count.saturating_sub(r.cascaded) as u64;
            if direct > 0 {
                self.revocations
                    .get_or_create(&TriggerLabel {
                        trigger: t.as_str().to_owned(),
                    })
                    .inc_by(direct);
            }
        }
        if r.cascaded > 0 {
            self.revocations
                .get_or_create(&TriggerLabel {
                    trigger: "parent_revoked".to_owned(),
                })
                .inc_by(r.cascaded as u64);
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
