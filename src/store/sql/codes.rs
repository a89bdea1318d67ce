//! Codes on every SQL dialect: how a stored code judges a submission, and the check and redeem
//! steps that run inside one transaction of the caller's (SPEC §3: a wrong code or password uses
//! an attempt; of many requests racing with the right code exactly one signs in). Where the
//! dialect locks rows, the code's row is locked when read, so concurrent checks and redemptions
//! of one code are served one after the other; SQLite has one writer, which serves them so.
use subtle::ConstantTimeEq;

use super::{sessions, Dialect, SqlRow, Val};
use crate::clock::Millis;
use crate::domain::{CodePurpose, Email, SessionKey};
use crate::store::{CodeCheck, Redeem, Redeemed};

/// The fields of a stored code that decide a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub email: String,
    pub mac: String,
    pub expires_at: Millis,
    pub attempts: u32,
}

/// Evaluates a stored code against a submission: the one rule of check and redeem. The MAC is
/// compared in constant time.
pub fn judge(row: Option<&CodeRow>, email: &Email, mac: &str, now: Millis, max: u32) -> CodeCheck {
    let Some(row) = row else {
        return CodeCheck::Missing;
    };
    if row.email != email.as_str() {
        CodeCheck::Missing
    } else if row.expires_at <= now {
        CodeCheck::Expired
    } else if row.attempts >= max {
        CodeCheck::Dead
    } else if bool::from(row.mac.as_bytes().ct_eq(mac.as_bytes())) {
        CodeCheck::Right
    } else {
        CodeCheck::Wrong {
            attempts_left: max - row.attempts - 1,
        }
    }
}

/// Reads the code (session, purpose), locking its row where the dialect locks rows.
pub async fn lock_row<D: Dialect>(
    conn: &mut D::Conn,
    session: &SessionKey,
    purpose: CodePurpose,
) -> Result<Option<CodeRow>, sqlx::Error> {
    let args = [Val::Text(session.as_str()), Val::Text(purpose.as_str())];
    let row = super::fetch_optional::<D>(conn, D::SQL.codes.for_update, &args).await?;
    row.map(|r| {
        Ok(CodeRow {
            email: r.text("email")?,
            mac: r.text("mac")?,
            expires_at: r.int("expires_at")?,
            attempts: r.count("attempts")?,
        })
    })
    .transpose()
}

async fn use_attempt<D: Dialect>(
    conn: &mut D::Conn,
    session: &SessionKey,
    purpose: CodePurpose,
) -> Result<(), sqlx::Error> {
    let args = [Val::Text(session.as_str()), Val::Text(purpose.as_str())];
    D::execute(conn, D::SQL.codes.use_attempt, &args).await?;
    Ok(())
}

/// A submitted code and what it must match: the session, purpose and address it was sent for.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub session: &'a SessionKey,
    pub purpose: CodePurpose,
    pub email: &'a Email,
    /// The keyed hash of the submitted code.
    pub mac: &'a str,
    pub now: Millis,
    pub max_attempts: u32,
}

impl Submission<'_> {
    fn judge(&self, row: Option<&CodeRow>) -> CodeCheck {
        judge(row, self.email, self.mac, self.now, self.max_attempts)
    }
}

/// A submission (see `CodeStore::check_code`): a wrong code uses an attempt. Inside the caller's
/// transaction, which commits whatever the verdict.
pub async fn check<D: Dialect>(
    conn: &mut D::Conn,
    sub: &Submission<'_>,
) -> Result<CodeCheck, sqlx::Error> {
    let row = lock_row::<D>(conn, sub.session, sub.purpose).await?;
    let verdict = sub.judge(row.as_ref());
    if let CodeCheck::Wrong { .. } = verdict {
        use_attempt::<D>(conn, sub.session, sub.purpose).await?;
    }
    Ok(verdict)
}

/// What [`redeem`] did, and whether its transaction has anything to commit.
pub struct Redemption {
    pub outcome: Redeemed,
    /// `false` when the code was no longer right: nothing was written, roll back.
    pub wrote: bool,
}

/// Re-checks the code and applies `action` (see `CodeStore::redeem_code`), inside the caller's
/// transaction: signing in consumes the code, ends the old session and starts the new one
/// (fixation defence) in that one step.
pub async fn redeem<D: Dialect>(
    conn: &mut D::Conn,
    sub: &Submission<'_>,
    action: &Redeem,
) -> Result<Redemption, sqlx::Error> {
    let (session, purpose, max_attempts) = (sub.session, sub.purpose, sub.max_attempts);
    let row = lock_row::<D>(conn, session, purpose).await?;
    if sub.judge(row.as_ref()) != CodeCheck::Right {
        return Ok(Redemption {
            outcome: Redeemed::Gone,
            wrote: false,
        });
    }
    let attempts = row.map_or(0, |r| r.attempts);
    let outcome = match action {
        Redeem::SignIn { new, events } => {
            sessions::delete::<D>(conn, session).await?;
            sessions::insert::<D>(conn, new).await?;
            super::outbox::insert_events::<D>(conn, events).await?;
            Redeemed::SignedIn
        }
        Redeem::UseAttempt => {
            use_attempt::<D>(conn, session, purpose).await?;
            Redeemed::AttemptUsed {
                attempts_left: max_attempts.saturating_sub(attempts + 1),
            }
        }
    };
    Ok(Redemption {
        outcome,
        wrote: true,
    })
}
