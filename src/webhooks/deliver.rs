//! One delivery attempt of one event to one URL, and when to try again (SPEC §7).
//!
//! Every attempt has an overall deadline we enforce ourselves around the whole exchange
//! (connect, TLS, request, answer head and the part of its body we read), as for mail (SPEC §3
//! Robustness): a receiver that accepts and never answers costs one attempt and one slot, no
//! more. Redirects are not followed (a 3xx is a failed attempt: the URL is what the operator
//! configured, nothing else); a receiver's answer is read only up to [`ANSWER_KEPT`] bytes and
//! logged shortened.
use std::time::Duration;

use super::secret::WebhookSecret;
use crate::clock::Millis;

/// How much of a receiver's answer is read and kept (for the operator's log).
pub const ANSWER_KEPT: usize = 512;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Anything else: a non-2xx answer (with the start of its body), an error, the deadline.
    Failed { reason: String },
}

/// Sends events: one HTTP client for every URL, without redirects, cookies or proxies from the
/// environment.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    secret: WebhookSecret,
    deadline: Duration,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(secret: WebhookSecret, deadline: Duration) -> Result<Sender, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(deadline)
            .user_agent(concat!("mailcode/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Sender {
            client,
            secret,
            deadline,
        })
    }

    /// One attempt: POST an event's `body` to `url` as `webhook_id`, signed at `now`.
    pub async fn attempt(&self, url: &str, webhook_id: &str, body: &str, now: Millis) -> Outcome {
        let timestamp = now.div_euclid(1000);
        let signature = self.secret.sign(webhook_id, timestamp, body);
        let exchange = async {
            let resp = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", webhook_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body.to_owned())
                .send()
                .await
                .map_err(describe)?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(status);
            }
            let start = read_start(resp).await;
            Err(format!("answered {status}: {start}"))
        };
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(Ok(status)) => Outcome::Delivered { status },
            Ok(Err(reason)) => Outcome::Failed { reason },
            Err(_) => Outcome::Failed {
                reason: format!("no answer within {} s", self.deadline.as_secs_f64()),
            },
        }
    }
}

/// An error without the URL: reqwest names it, and a URL may hold credentials.
fn describe(e: reqwest::Error) -> String {
    let connect = e.is_connect();
    let e = e.without_url();
    if connect {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

/// The first [`ANSWER_KEPT`] bytes of an answer's body, as text on one line.
async fn read_start(mut resp: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < ANSWER_KEPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(ANSWER_KEPT);
    String::from_utf8_lossy(&kept)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How long after the `n`-th failed attempt (0-based) the next one comes (SPEC §7: within 10 s, then
/// growing, for 24 h); `None` once the 24 h are spent.
pub fn retry_delay(n: u32) -> Option<Duration> {
    const SCHEDULE: [u64; 7] = [5, 30, 120, 600, 3600, 2 * 3600, 4 * 3600];
    let secs = match SCHEDULE.get(n as usize) {
        Some(s) => *s,
        None => 4 * 3600,
    };
    let spent: u64 = (0..n)
        .map(|i| SCHEDULE.get(i as usize).copied().unwrap_or(4 * 3600))
        .sum();
    (spent + secs <= 24 * 3600).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_within_ten_seconds_grow_and_stop_after_a_day() {
        assert!(retry_delay(0).expect("first") <= Duration::from_secs(10));
        let mut total = Duration::ZERO;
        let mut last = Duration::ZERO;
        let mut n = 0;
        while let Some(d) = retry_delay(n) {
            assert!(d >= last, "never shorter than the one before");
            last = d;
            total += d;
            n += 1;
            assert!(n < 100);
        }
        assert!(total <= Duration::from_secs(24 * 3600));
        assert!(
            total >= Duration::from_secs(20 * 3600),
            "about a day: {total:?}"
        );
    }
}
