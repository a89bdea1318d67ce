//! The numbers of SPEC §3, in one place. Each field names the rule it implements; tests and
//! operators may change them, nothing else hard-codes them.
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Policy {
    /// §3 Codes: lifetime 10 minutes.
    pub code_ttl: Duration,
    /// §3 Codes: after 5 wrong attempts the code is dead.
    pub code_max_attempts: u32,
    /// §3 Codes: another code for the same email and purpose only after 60 s.
    pub code_cooldown: Duration,
    /// §3 Codes: after 10 wrong codes for one email within an hour, codes are refused.
    pub guess_budget: u32,
    pub guess_budget_window: Duration,
    /// §3 Rate limits: per email, 5 codes per hour.
    pub codes_per_email: u32,
    /// §3 Rate limits: per client IP, 30 code requests per hour.
    pub code_requests_per_ip: u32,
    /// §3 Rate limits: per client IP, 60 login attempts per hour.
    pub logins_per_ip: u32,
    /// The window of the three limits above.
    pub limit_window: Duration,
    /// §3 Sessions: idle timeout 30 minutes.
    pub session_idle: Duration,
    /// §3 Sessions: activity is written at most once a minute per session.
    pub session_touch_every: Duration,
    /// §3 Sessions: absolute lifetime 7 days.
    pub session_absolute: Duration,
    /// §3 Robustness: request bodies above 16 KiB get 413.
    pub max_body_bytes: usize,
    /// §3 Robustness: every request is answered within 10 s.
    pub request_timeout: Duration,
    /// §3 Robustness: a store that is down gives 503 within 2 s: each store call is bounded by
    /// this, with room left for the rest of the request on a loaded machine.
    pub store_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        Policy {
            code_ttl: Duration::from_secs(10 * MIN),
            code_max_attempts: 5,
            code_cooldown: Duration::from_secs(60),
            guess_budget: 10,
            guess_budget_window: Duration::from_secs(HOUR),
            codes_per_email: 5,
            code_requests_per_ip: 30,
            logins_per_ip: 60,
            limit_window: Duration::from_secs(HOUR),
            session_idle: Duration::from_secs(30 * MIN),
            session_touch_every: Duration::from_secs(MIN),
            session_absolute: Duration::from_secs(7 * 24 * HOUR),
            max_body_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_millis(1200),
        }
    }
}
