//! Prometheus metrics: one recorder per process (the `metrics` facade is global), rendered by
//! `GET /metrics`. Names are listed here so that dashboards have one place to look.
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const CODES_SENT: &str = "mailcode_codes_issued_total";
pub const MAIL_DELIVERED: &str = "mailcode_mail_delivered_total";
pub const MAIL_RETRIED: &str = "mailcode_mail_retried_total";
pub const MAIL_DROPPED: &str = "mailcode_mail_dropped_total";
/// Every failed delivery attempt, by `kind`: `deadline` (no answer within --smtp-timeout) or
/// `error` (refused, closed, rejected).
pub const MAIL_ATTEMPTS_FAILED: &str = "mailcode_mail_attempts_failed_total";
/// Connections refused at accept: `reason` is `total` (--max-connections) or `per_ip`.
pub const HTTP_CONNECTIONS_REFUSED: &str = "mailcode_http_connections_refused_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "mailcode_http_connections_open";
pub const SIGN_INS: &str = "mailcode_sign_ins_total";
pub const TOKENS_ISSUED: &str = "mailcode_access_tokens_issued_total";
pub const REJECTIONS: &str = "mailcode_rejections_total";
pub const HTTP_REQUESTS: &str = "mailcode_http_requests_total";
pub const HTTP_DURATION: &str = "mailcode_http_request_duration_seconds";
pub const STORE_DURATION: &str = "mailcode_store_duration_seconds";
/// Webhook delivery attempts (SPEC §7), by `event` (`user.created`, …) and `outcome`
/// (`delivered`, `retry`, `failed`: given up after 24 h).
pub const WEBHOOK_ATTEMPTS: &str = "mailcode_webhook_attempts_total";
/// How long a webhook attempt took, by `event`, whatever its outcome.
pub const WEBHOOK_DURATION: &str = "mailcode_webhook_attempt_duration_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static HTTP: OnceLock<HttpMetrics> = OnceLock::new();

/// The per-request metrics, registered once: looking a metric up by name and labels on every
/// request costs more than recording it.
pub struct HttpMetrics {
    by_class: [metrics::Counter; 5],
    duration: metrics::Histogram,
}

impl HttpMetrics {
    pub fn record(&self, status: u16, secs: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].increment(1);
        self.duration.record(secs);
    }
}

/// The HTTP metrics (the recorder is installed first, so the handles are live).
pub fn http() -> &'static HttpMetrics {
    HTTP.get_or_init(|| {
        handle();
        HttpMetrics {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|c| metrics::counter!(HTTP_REQUESTS, "status" => c)),
            duration: metrics::histogram!(HTTP_DURATION),
        }
    })
}

/// Latency buckets, in seconds, for every `*_seconds` histogram: real Prometheus histograms (not
/// summaries) add up across instances, and a fixed set of buckets costs the same at any load.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often recorded samples are folded into the histograms. The recorder buffers every sample
/// until then: without this, a process that is never scraped grows by the request (at 50k
/// requests/s, about 2 MiB/s).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the recorder once per process, starts its upkeep, and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                // Fails only for an empty list, which the constant is not.
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed already; then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            // A thread rather than a task: the recorder outlives any one runtime (tests start
            // many apps in one process), and this thread sleeps almost all of the time.
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .stack_size(64 * 1024)
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the metrics upkeep thread; metrics are folded only when scraped");
            }
            handle
        })
        .clone()
}
