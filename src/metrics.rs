//! Prometheus metrics: one recorder per process (the `metrics` facade is global), rendered by
//! `GET /metrics`. Names are listed here so that dashboards have one place to look.
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const CODES_SENT: &str = "mailcode_codes_issued_total";
pub const MAIL_DELIVERED: &str = "mailcode_mail_delivered_total";
pub const MAIL_RETRIED: &str = "mailcode_mail_retried_total";
pub const MAIL_DROPPED: &str = "mailcode_mail_dropped_total";
pub const SIGN_INS: &str = "mailcode_sign_ins_total";
pub const REJECTIONS: &str = "mailcode_rejections_total";
pub const HTTP_REQUESTS: &str = "mailcode_http_requests_total";
pub const HTTP_DURATION: &str = "mailcode_http_request_duration_seconds";
pub const STORE_DURATION: &str = "mailcode_store_duration_seconds";

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

/// Installs the recorder once per process and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed already; then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
