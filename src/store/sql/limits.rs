//! Fixed-window limits (SPEC §3), the same on every SQL dialect: one row per counter, the
//! spacing of a [`LimitCheck`] a row of its own ([`LimitCheck::spacing_row`]).
use std::time::Duration;

use super::{Dialect, SqlRow, Val};
use crate::clock::Millis;
use crate::store::{Limit, LimitCheck};

/// The verdict of a counter that reads `count` hits in a window ending at `reset_at`.
pub fn limit_from(count: i64, reset_at: i64, limit: u32, now: Millis) -> Limit {
    if count > i64::from(limit) {
        Limit::Limited {
            retry_after_ms: (reset_at - now).max(1),
        }
    } else {
        Limit::Allowed
    }
}

/// Counts one hit in a fixed window (see `LimitStore::hit_limit`), inside the caller's
/// transaction where the dialect locks rows: the row stays locked until it ends.
pub async fn count_hit<D: Dialect>(
    conn: &mut D::Conn,
    key: &str,
    limit: u32,
    window: Duration,
    now: Millis,
) -> Result<Limit, sqlx::Error> {
    let reset = now.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    let args = [Val::Text(key), Val::Int(reset), Val::Int(now)];
    let row = match D::SQL.limits.read_counter {
        None => super::fetch_optional::<D>(conn, D::SQL.limits.count_hit, &args).await?,
        Some(read) => {
            D::execute(conn, D::SQL.limits.count_hit, &args).await?;
            super::fetch_optional::<D>(conn, read, &args[..1]).await?
        }
    };
    let row = row.ok_or(sqlx::Error::RowNotFound)?;
    Ok(limit_from(
        row.int("count")?,
        row.int("reset_at")?,
        limit,
        now,
    ))
}

/// Reads a counter without counting (see `LimitStore::peek_limit`).
pub async fn read_limit<D: Dialect>(
    conn: &mut D::Conn,
    key: &str,
    limit: u32,
    now: Millis,
) -> Result<Limit, sqlx::Error> {
    let args = [Val::Text(key), Val::Int(now)];
    match super::fetch_optional::<D>(conn, D::SQL.limits.peek, &args).await? {
        // At the limit already: one more would be refused.
        Some(r) => Ok(limit_from(
            r.int("count")? + 1,
            r.int("reset_at")?,
            limit,
            now,
        )),
        None => Ok(Limit::Allowed),
    }
}

/// Several limits as `LimitStore::hit_limits` says, inside the caller's transaction, which the
/// caller commits refused or not: the hits counted up to the refusal stay counted.
pub async fn hit_limits<D: Dialect>(
    conn: &mut D::Conn,
    checks: &[LimitCheck],
    now: Millis,
) -> Result<Limit, sqlx::Error> {
    for c in checks {
        // The spacing's own row first: a refusal there counts nothing on the limit itself.
        if let Some((key, gap)) = c.spacing_row() {
            let verdict = count_hit::<D>(conn, &key, 1, gap, now).await?;
            if verdict != Limit::Allowed {
                return Ok(verdict);
            }
        }
        let verdict = if c.count {
            count_hit::<D>(conn, &c.key, c.limit, c.window, now).await?
        } else {
            read_limit::<D>(conn, &c.key, c.limit, now).await?
        };
        if verdict != Limit::Allowed {
            return Ok(verdict);
        }
    }
    Ok(Limit::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_hits_than_the_limit_are_refused_until_the_window_ends() {
        assert_eq!(limit_from(3, 100, 3, 50), Limit::Allowed);
        assert_eq!(
            limit_from(4, 100, 3, 50),
            Limit::Limited { retry_after_ms: 50 }
        );
        assert_eq!(
            limit_from(4, 100, 3, 100),
            Limit::Limited { retry_after_ms: 1 },
            "never a zero wait"
        );
    }
}
