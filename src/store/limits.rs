//! What a limit store does (SPEC §3 Rate limits): fixed-window counters, one or several in one
//! atomic step.
use async_trait::async_trait;

use std::time::Duration;

use super::StoreResult;
use crate::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Allowed,
    Limited { retry_after_ms: Millis },
}

/// One limit of a [`LimitStore::hit_limits`] call: counted as [`LimitStore::hit_limit`]
/// does, or only read as [`LimitStore::peek_limit`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    pub key: String,
    pub limit: u32,
    /// The fixed window a counted hit opens when none is running; a peek ignores it.
    pub window: Duration,
    /// `true`: counts one hit; `false`: reads the counter without counting.
    pub count: bool,
    /// A second rule on a counted limit, checked first; `None` on a peek.
    pub spacing: Option<Spacing>,
}

/// Two counted hits of a [`LimitCheck`] with the same `name` at least `gap` apart: a code's
/// resend cooldown (SPEC §3: another code for the same email and purpose only after 60 s) is
/// the spacing, named by the purpose, of the address's hourly count. A hit it refuses counts
/// nothing; one it lets through starts its gap even if the count then refuses (as the
/// separate cooldown counter did before it). Kept with the counter it belongs to rather than
/// as a counter of its own: on Redis that is one key fewer per code request, the largest
/// part of a code request's cost there (docs/benchmarks.md, workload 2). SQL stores keep it as a row of
/// its own, `<key>~<name>`, a counter with ceiling 1 and window `gap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spacing {
    pub name: &'static str,
    pub gap: Duration,
}

impl LimitCheck {
    /// Counts one hit, as [`LimitStore::hit_limit`].
    pub fn hit(key: impl Into<String>, limit: u32, window: Duration) -> Self {
        LimitCheck {
            key: key.into(),
            limit,
            window,
            count: true,
            spacing: None,
        }
    }

    /// Reads without counting, as [`LimitStore::peek_limit`].
    pub fn peek(key: impl Into<String>, limit: u32) -> Self {
        LimitCheck {
            key: key.into(),
            limit,
            window: Duration::ZERO,
            count: false,
            spacing: None,
        }
    }

    /// Adds a [`Spacing`] to a counted hit (a peek has none: it ignores this). The name is
    /// ASCII letters, digits and `_` (a code purpose): the Redis record holds it as it is.
    pub fn spaced(mut self, name: &'static str, gap: Duration) -> Self {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "spacing name {name:?}"
        );
        if self.count {
            self.spacing = Some(Spacing { name, gap });
        }
        self
    }

    /// The SQL stores' row for the spacing: `<key>~<name>`, ceiling 1, window `gap`.
    pub fn spacing_row(&self) -> Option<(String, Duration)> {
        self.spacing
            .as_ref()
            .map(|s| (format!("{}~{}", self.key, s.name), s.gap))
    }
}

/// Fixed-window counters (SPEC §3 Rate limits).
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Counts one hit in a fixed window; `Limited` once more than `limit` hits fell in it.
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit>;
    /// Reads a counter without counting.
    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit>;
    /// Several limits in one atomic step (one round trip), exactly as calling
    /// [`hit_limit`](Self::hit_limit) or [`peek_limit`](Self::peek_limit) for each check in order
    /// and stopping at the first refusal: each counting check counts its hit (the refused one
    /// too, as `hit_limit` does); the checks after a refusal are neither counted nor read. The
    /// answer is the refusal, else `Allowed`.
    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit>;
}
