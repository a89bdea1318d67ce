//! Time, injected: the app asks a [`Clock`], so tests can move time instead of sleeping.
use chrono::{DateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch, the unit every store uses.
pub type Millis = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> Millis;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        Utc::now().timestamp_millis()
    }
}

/// A clock that starts at the real time and moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock {
            offset_ms: AtomicI64::new(0),
        })
    }
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// RFC 3339 UTC with seconds precision, the form every API answer uses.
pub fn rfc3339(ms: Millis) -> String {
    let dt: DateTime<Utc> = Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now);
    dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn ms(d: std::time::Duration) -> Millis {
    d.as_millis() as Millis
}
