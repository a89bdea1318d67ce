//! The PostgreSQL store's users, outbox and secret record (the store itself: `pg_store.rs`).
use async_trait::async_trait;
use sqlx::postgres::{PgDatabaseError, PgPool, PgRow};
use sqlx::Row;

use super::pg_store::{err, PostgresStore};
use super::postgres::Pg;
use super::{clip, SqlRow};
use crate::clock::Millis;
use crate::domain::{Email, Username};
use crate::store::{
    delivery_of, first_by_key, rekey, CodeRecord, CreateUserError, Delivery, NewUser, Outbox,
    OutgoingMail, QueuedMail, SecretRecord, StoreResult, User, UserStore,
};
use crate::store::{public_id_of, KeyGeneration, SigningKeyRecord, USER_COLS};
use crate::store::{DeadLetters, FailedDelivery, KIND_WEBHOOK};

/// A BYTEA column holding text (a username or its key: `migrations/postgres/0001_init.sql`).
fn bytes_text(r: &PgRow, col: &str) -> Result<String, sqlx::Error> {
    let bytes: Vec<u8> = r.try_get(col)?;
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: Box::new(e),
    })
}

fn user_from_row(r: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.int("id")?,
        public_id: public_id_of(r.opt_text("public_id")?)?,
        username: bytes_text(r, "username")?,
        email: r.text("email")?,
        password_hash: r.text("password_hash")?,
        disabled: r.flag("disabled")?,
        created_at: r.int("created_at")?,
    })
}

/// Recomputes username keys of older versions ([`rekey`]) in one transaction that locks every
/// row of `users` first, so instances starting together do it once: the next one waits, then
/// reads the rows as the first one left them and finds nothing to do. One indexed lookup when
/// there is nothing to do.
pub(super) async fn rekey_usernames(pool: &PgPool) -> StoreResult<()> {
    let version = Username::KEY_VERSION;
    let stale = sqlx::query("SELECT id FROM users WHERE username_key_version < $1 LIMIT 1")
        .bind(version)
        .fetch_optional(pool)
        .await
        .map_err(err)?;
    if stale.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(err)?;
    let rows = sqlx::query(
        "SELECT id, username, username_key, username_key_version FROM users ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(rekey::StoredName {
                id: r.int("id")?,
                username: bytes_text(r, "username")?,
                key: bytes_text(r, "username_key")?,
                key_version: r.int("username_key_version")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(err)?;
    let plan = rekey::plan(&rows);
    for k in &plan {
        sqlx::query("UPDATE users SET username_key = $1 WHERE id = $2")
            .bind(rekey::placeholder(k.id).into_bytes())
            .bind(k.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    for k in &plan {
        sqlx::query("UPDATE users SET username_key = $1, username_key_version = $2 WHERE id = $3")
            .bind(k.key.as_bytes())
            .bind(version)
            .bind(k.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    rekey::log(&plan);
    Ok(())
}

/// Which unique constraint a violation names (`migrations/postgres/0001_init.sql`).
fn violated_constraint(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(
            db.try_downcast_ref::<PgDatabaseError>()
                .and_then(|p| p.constraint())
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => None,
    }
}

impl PostgresStore {
    async fn find_user(&self, column: &'static str, value: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE {column} = $1");
        let row = self
            .run(|| sqlx::query(&sql).bind(value).fetch_optional(&self.pool))
            .await?;
        row.map(|r| user_from_row(&r).map_err(err)).transpose()
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        let res = self
            .run(|| async move {
                let res = sqlx::query(
                    "INSERT INTO users (public_id, username, username_key, username_key_version, \
                     email, password_hash, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id",
                )
                .bind(u.public_id.to_text())
                .bind(u.username.as_bytes())
                .bind(u.username_key.as_bytes())
                .bind(Username::KEY_VERSION)
                .bind(&u.email)
                .bind(&u.password_hash)
                .bind(u.created_at)
                .fetch_one(&self.pool)
                .await;
                match res {
                    Ok(r) => Ok(Ok(r.int("id")?)),
                    Err(e) => match violated_constraint(&e) {
                        Some(name) => Ok(Err(name)),
                        None => Err(e),
                    },
                }
            })
            .await?;
        match res {
            Ok(id) => Ok(id),
            Err(name) if name == "users_email" => Err(CreateUserError::EmailTaken),
            Err(name) if name == "users_username_key" => Err(CreateUserError::UsernameTaken),
            // A constraint not named: find out which one is taken.
            Err(_) => match self.find_user("email", &u.email).await? {
                Some(_) => Err(CreateUserError::EmailTaken),
                None => Err(CreateUserError::UsernameTaken),
            },
        }
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = self
            .run(|| sqlx::query(&sql).bind(id).fetch_optional(&self.pool))
            .await?;
        row.map(|r| user_from_row(&r).map_err(err)).transpose()
    }

    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>> {
        if keys.is_empty() {
            return Ok(None);
        }
        // One lookup for every key: an array parameter, whatever the number of keys.
        let sql =
            format!("SELECT {USER_COLS}, username_key FROM users WHERE username_key = ANY($1)");
        let keys_bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let rows = self
            .run(|| sqlx::query(&sql).bind(&keys_bytes).fetch_all(&self.pool))
            .await?;
        let found = rows
            .iter()
            .map(|r| Ok((bytes_text(r, "username_key")?, user_from_row(r)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(err)?;
        Ok(first_by_key(keys, found))
    }

    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        self.find_user("email", email.as_str()).await
    }

    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY id");
        let rows = self.run(|| sqlx::query(&sql).fetch_all(&self.pool)).await?;
        rows.iter().map(|r| user_from_row(r).map_err(err)).collect()
    }
}

/// The one-row `deployment` table (migration 0004). `ON CONFLICT DO NOTHING` on the one row is
/// the atomic step: of instances starting at once, one inserts, the others find its row.
#[async_trait]
impl SigningKeyRecord for PostgresStore {
    async fn key_generations(&self, now: Millis) -> StoreResult<Vec<KeyGeneration>> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            super::keys::generations::<Pg>(&mut conn, now).await
        })
        .await
    }

    async fn rotate_keys(&self, now: Millis, retire_at: Millis) -> StoreResult<KeyGeneration> {
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let new = super::keys::rotate::<Pg>(&mut tx, now, retire_at).await?;
            tx.commit().await?;
            Ok(new)
        })
        .await
    }
}

#[async_trait]
impl SecretRecord for PostgresStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let inserted = self
            .run(|| {
                sqlx::query(
                    "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, $1) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(fingerprint)
                .execute(&self.pool)
            })
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.recorded().await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let before = self.recorded().await?;
        self.run(|| {
            sqlx::query(
                "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET secret_fingerprint = EXCLUDED.secret_fingerprint",
            )
            .bind(fingerprint)
            .execute(&self.pool)
        })
        .await?;
        Ok(before)
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        let row = self
            .run(|| {
                sqlx::query("SELECT secret_fingerprint FROM deployment WHERE id = 1")
                    .fetch_optional(&self.pool)
            })
            .await?;
        row.map(|r| r.text("secret_fingerprint").map_err(err))
            .transpose()
    }
}

fn mail_from_row(r: &PgRow) -> Result<QueuedMail, sqlx::Error> {
    Ok(QueuedMail {
        attempts: r.count("attempts")?,
        receipt: r.text("mail_ref")?,
        mail: OutgoingMail {
            mail_ref: r.text("mail_ref")?,
            code: None,
            to: r.text("to_addr")?,
            order: r.text("mail_order")?,
            expires_at: r.int("expires_at")?,
            created_at: r.int("created_at")?,
        },
    })
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn enqueue(&self, m: &OutgoingMail) -> StoreResult<()> {
        if self.kind == KIND_WEBHOOK {
            return self
                .run(|| async move {
                    let mut conn = self.pool.acquire().await?;
                    super::outbox::insert_events::<Pg>(&mut conn, std::slice::from_ref(m)).await
                })
                .await;
        }
        self.run(|| {
            sqlx::query(
                "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
                 next_attempt_at, expires_at, created_at) VALUES ($1,$2,$3,'queued',$4,$5,$4)",
            )
            .bind(&m.mail_ref)
            .bind(&m.to)
            .bind(&m.order)
            .bind(m.created_at)
            .bind(m.expires_at)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// Leases due mails in one statement: the rows are locked as they are chosen, rows another
    /// worker (of this or another instance) is leasing right now are skipped (`SKIP LOCKED`),
    /// and the lease is written before the locks go, so no two workers get the same mail.
    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        let rows = self
            .run(|| {
                sqlx::query(
                    "UPDATE mail_queue SET lease_until = $1 WHERE id IN (SELECT id FROM mail_queue \
                     WHERE kind = $4 AND status = 'queued' AND next_attempt_at <= $2 \
                     AND lease_until <= $2 ORDER BY next_attempt_at, id LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) \
                     RETURNING id, next_attempt_at, attempts, mail_ref, to_addr, mail_order, \
                     expires_at, created_at",
                )
                .bind(lease_until)
                .bind(now)
                .bind(i64::from(max))
                .bind(self.kind)
                .fetch_all(&self.pool)
            })
            .await?;
        // RETURNING keeps no order: the earliest due first, as chosen.
        let mut due = rows
            .iter()
            .map(|r| Ok(((r.int("next_attempt_at")?, r.int("id")?), mail_from_row(r)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(err)?;
        due.sort_by_key(|(order, _)| *order);
        Ok(due.into_iter().map(|(_, m)| m).collect())
    }

    async fn mark_sent(&self, mails: &[QueuedMail], _now: Millis) -> StoreResult<()> {
        let refs: Vec<&str> = mails.iter().map(|m| m.mail.mail_ref.as_str()).collect();
        if refs.is_empty() {
            return Ok(());
        }
        // A code lives in the queue only until its mail has left: the order is blanked.
        self.run(|| {
            sqlx::query(
                "UPDATE mail_queue SET status = 'sent', attempts = attempts + 1, \
                 last_error = NULL, mail_order = '' WHERE mail_ref = ANY($1)",
            )
            .bind(&refs)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        self.run(|| {
            sqlx::query(
                "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = $1, \
                 lease_until = 0, last_error = $2 WHERE mail_ref = $3",
            )
            .bind(next_attempt_at)
            .bind(clip(error))
            .bind(mail_ref)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        self.run(|| {
            sqlx::query(
                // A webhook's body is kept for `mailcode webhooks retry`; a mail's order (its
                // code) is not.
                "UPDATE mail_queue SET status = 'failed', last_error = $1, \
                 attempts = attempts + CASE WHEN kind = 'mail' THEN 0 ELSE 1 END, \
                 mail_order = CASE WHEN kind = 'mail' THEN '' ELSE mail_order END \
                 WHERE mail_ref = $2",
            )
            .bind(clip(error))
            .bind(mail_ref)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        let mail_ref = &code.mail_ref;
        let row = self
            .run(|| {
                sqlx::query("SELECT status, last_error FROM mail_queue WHERE mail_ref = $1")
                    .bind(mail_ref)
                    .fetch_optional(&self.pool)
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let status = r.text("status").map_err(err)?;
        let last_error = r.opt_text("last_error").map_err(err)?;
        Ok(Some(delivery_of(&status, last_error.is_some())))
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let row = self
            .run(|| {
                sqlx::query(
                    "SELECT MIN(GREATEST(next_attempt_at, lease_until)) AS due FROM mail_queue \
                     WHERE kind = $1 AND status = 'queued'",
                )
                .bind(self.kind)
                .fetch_one(&self.pool)
            })
            .await?;
        row.opt_int("due").map_err(err)
    }
}

#[async_trait]
impl DeadLetters for PostgresStore {
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            super::outbox::failed::<Pg>(&mut conn, max).await
        })
        .await
    }

    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            super::outbox::requeue::<Pg>(&mut conn, id, now, expires_at).await
        })
        .await
    }
}
