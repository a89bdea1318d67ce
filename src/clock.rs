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

/// RFC 3339 UTC with seconds precision, the form every API answer uses. Written by hand for
/// the years 0 to 9999 (every answer of `GET /api/me` carries two: chrono's general formatter
/// cost ~500 instructions each on the hot path, docs/benchmarks.md); chrono for the rest.
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        let dt: DateTime<Utc> = Utc
            .timestamp_millis_opt(ms)
            .single()
            .unwrap_or_else(Utc::now);
        return dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    }
    let of_day = secs.rem_euclid(86_400);
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    // Only ASCII digits and separators were written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn ms(d: std::time::Duration) -> Millis {
    d.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_rfc3339(ms: Millis) -> String {
        let dt: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().expect("in range");
        dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn rfc3339_matches_chrono() {
        let day = 86_400_000;
        let mut samples = vec![
            0,
            -1,
            999,
            1000,
            -86_400_001,
            951_782_400_000 - 1,       // 2000-02-28T23:59:59.999Z
            951_782_400_000 + day - 1, // 2000-02-29
            4_107_542_400_000 + day,   // 2100-03-01
            253_402_300_799_999,       // 9999-12-31T23:59:59.999Z
            -62_167_219_200_000,       // 0000-01-01T00:00:00Z
            1_764_288_000_000,         // 2025-11-28
        ];
        // Every day of four centuries around now, at a varying time of day.
        let mut ms: i64 = -5_000_000 * 1000;
        for i in 0..146_097 * 2 {
            samples.push(ms + (i * 7_919_000) % day);
            ms += day;
        }
        for ms in samples {
            assert_eq!(rfc3339(ms), chrono_rfc3339(ms), "at {ms} ms");
        }
        // Outside 0..=9999, chrono's form (a sign and more digits).
        assert_eq!(rfc3339(253_402_300_800_000), "+10000-01-01T00:00:00Z");
    }
}
