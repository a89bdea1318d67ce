//! Account rules every SQL dialect shares: the row mapping, and what a store does to its
//! accounts when it opens (user ids, username keys).
use super::{Dialect, SqlRow, Val};
use crate::domain::{UserId, Username};
use crate::store::{public_id_of, rekey, User};

/// A [`User`] from the columns [`crate::store::USER_COLS`] names.
pub fn from_row(r: &impl SqlRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.int("id")?,
        public_id: public_id_of(r.opt_text("public_id")?)?,
        username: r.key_text("username")?,
        email: r.text("email")?,
        password_hash: r.text("password_hash")?,
        disabled: r.flag("disabled")?,
        created_at: r.int("created_at")?,
    })
}

/// Gives every account older than user ids (SPEC §6) one, made from its creation time, when
/// the store opens. An account that got one meanwhile (another instance starting at the same
/// time) keeps it: the update only fills an empty id. One indexed lookup when there is nothing
/// to do.
pub async fn assign_user_ids<D: Dialect>(conn: &mut D::Conn) -> Result<u64, sqlx::Error> {
    let mut assigned = 0;
    loop {
        let rows = D::fetch_all(conn, D::SQL.users.without_public_id, &[]).await?;
        if rows.is_empty() {
            return Ok(assigned);
        }
        for r in &rows {
            let id = UserId::new(r.int("created_at")?).to_text();
            let args = [Val::Int(r.int("id")?), Val::Text(&id)];
            assigned += D::execute(conn, D::SQL.users.set_public_id, &args).await?;
        }
    }
}

/// Whether any account holds a username key older than [`Username::KEY_VERSION`]: one indexed
/// lookup, so that [`rekey_usernames`] costs nothing when there is nothing to do.
pub async fn stale_keys<D: Dialect>(conn: &mut D::Conn) -> Result<bool, sqlx::Error> {
    let args = [Val::Int(Username::KEY_VERSION)];
    Ok(
        super::fetch_optional::<D>(conn, D::SQL.users.stale_keys, &args)
            .await?
            .is_some(),
    )
}

/// Recomputes username keys of older versions ([`rekey`]) inside the caller's transaction,
/// which reads every row of `users` locked first where the dialect locks rows, so instances
/// starting together do it once: the next one waits, then reads the rows as the first one left
/// them and finds nothing to do (SQLite: one writer). Every key is parked first, so that no
/// new key collides with an old one still in place. Answers the plan, to log once committed.
pub async fn rekey_usernames<D: Dialect>(
    conn: &mut D::Conn,
) -> Result<Vec<rekey::NewKey>, sqlx::Error> {
    let rows = D::fetch_all(conn, D::SQL.users.names_for_update, &[]).await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(rekey::StoredName {
                id: r.int("id")?,
                username: r.key_text("username")?,
                key: r.key_text("username_key")?,
                key_version: r.int("username_key_version")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let plan = rekey::plan(&rows);
    for k in &plan {
        let parked = rekey::placeholder(k.id);
        let args = [Val::Key(&parked), Val::Int(k.id)];
        D::execute(conn, D::SQL.users.park_key, &args).await?;
    }
    for k in &plan {
        let args = [
            Val::Key(&k.key),
            Val::Int(Username::KEY_VERSION),
            Val::Int(k.id),
        ];
        D::execute(conn, D::SQL.users.set_key, &args).await?;
    }
    Ok(plan)
}
