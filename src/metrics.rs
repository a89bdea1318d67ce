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
