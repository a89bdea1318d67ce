//! [`CodeStore`] on every SQL dialect: the check and the redeem are one transaction each around
//! the shared rules (`sql/codes.rs`).
use async_trait::async_trait;

use super::SqlStore;
use crate::clock::Millis;
use crate::domain::{CodePurpose, Email, SessionKey};
use crate::store::sql::codes::{self, Submission};
use crate::store::sql::{Dialect, SqlRow, Val};
use crate::store::{CodeCheck, CodeRecord, CodeStore, Redeem, Redeemed, StoreResult};

fn code_from_row(session: &SessionKey, r: &impl SqlRow) -> Result<CodeRecord, sqlx::Error> {
    let purpose = r.text("purpose")?;
    let purpose = CodePurpose::parse(&purpose).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "purpose".into(),
        source: format!("unknown code purpose {purpose:?}").into(),
    })?;
    Ok(CodeRecord {
        session: session.clone(),
        purpose,
        email: r.text("email")?,
        mac: r.text("mac")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        resend_available_at: r.int("resend_available_at")?,
        attempts: r.count("attempts")?,
        mail_ref: r.text("mail_ref")?,
    })
}

#[async_trait]
impl<D: Dialect> CodeStore for SqlStore<D> {
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let args = [
            Val::Text(c.session.as_str()),
            Val::Text(c.purpose.as_str()),
            Val::Text(&c.email),
            Val::Text(&c.mac),
            Val::Int(c.created_at),
            Val::Int(c.expires_at),
            Val::Int(c.resend_available_at),
            Val::Int(i64::from(c.attempts)),
            Val::Text(&c.mail_ref),
        ];
        self.write(D::SQL.codes.issue, &args).await.map(drop)
    }

    async fn check_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let sub = &Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        // Committed whatever the verdict: a wrong code has used an attempt.
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            let verdict = codes::check::<D>(&mut tx, sub).await?;
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }

    async fn redeem_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
        action: Redeem,
    ) -> StoreResult<Redeemed> {
        let sub = &Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        let action = &action;
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            let done = codes::redeem::<D>(&mut tx, sub, action).await?;
            // Nothing written when the code was no longer right.
            if done.wrote {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(done.outcome)
        })
        .await
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        let args = [Val::Text(session.as_str()), Val::Int(now)];
        self.read_one(D::SQL.codes.current, &args, |r| code_from_row(session, r))
            .await
    }
}
