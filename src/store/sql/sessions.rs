//! Session rows, the same on every SQL dialect: the row mapping and the writes that the redeem
//! transaction ([`super::codes::redeem`]) shares with the session store.
use super::{Dialect, SqlRow, Val};
use crate::domain::{SessionKey, SessionKind, SessionRecord, SessionUser, UserId};
use crate::store::OutgoingMail;

/// The columns of `sessions`, in the order [`insert`] binds them.
pub const COLUMNS: &str = "key, kind, user_id, username, email, created_at, last_seen_at, \
                           idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id";

pub fn from_row(r: &impl SqlRow) -> Result<SessionRecord, sqlx::Error> {
    let user = match r.opt_int("user_id")? {
        Some(id) => Some(SessionUser {
            id,
            username: r.opt_text("username")?.unwrap_or_default(),
            email: r.opt_text("email")?.unwrap_or_default(),
            // A row written before user ids has none; the flows fill it from the account.
            public_id: r
                .opt_text("user_public_id")?
                .as_deref()
                .and_then(UserId::parse),
        }),
        None => None,
    };
    Ok(SessionRecord {
        key: SessionKey::from_hex(r.text("key")?),
        kind: SessionKind::parse(&r.text("kind")?),
        user,
        created_at: r.int("created_at")?,
        last_seen_at: r.int("last_seen_at")?,
        idle_expires_at: r.int("idle_expires_at")?,
        absolute_expires_at: r.int("absolute_expires_at")?,
        user_agent: r.text("user_agent")?,
        ip: r.text("ip")?,
    })
}

pub async fn insert<D: Dialect>(conn: &mut D::Conn, s: &SessionRecord) -> Result<(), sqlx::Error> {
    let user = s.user.as_ref();
    let public_id = user.and_then(|u| u.public_id).map(|id| id.to_text());
    let args = [
        Val::Text(s.key.as_str()),
        Val::Text(s.kind.as_str()),
        Val::OptInt(user.map(|u| u.id)),
        Val::OptText(user.map(|u| u.username.as_str())),
        Val::OptText(user.map(|u| u.email.as_str())),
        Val::Int(s.created_at),
        Val::Int(s.last_seen_at),
        Val::Int(s.idle_expires_at),
        Val::Int(s.absolute_expires_at),
        Val::Text(&s.user_agent),
        Val::Text(&s.ip),
        Val::OptText(public_id.as_deref()),
    ];
    D::execute(conn, D::SQL.sessions.insert, &args).await?;
    Ok(())
}

/// Deletes a session and its codes; true when the session existed.
pub async fn delete<D: Dialect>(conn: &mut D::Conn, key: &SessionKey) -> Result<bool, sqlx::Error> {
    let args = [Val::Text(key.as_str())];
    D::execute(conn, D::SQL.sessions.delete_codes, &args).await?;
    Ok(D::execute(conn, D::SQL.sessions.delete, &args).await? > 0)
}

/// Ends a session (logout, revocation): deleted with its codes, and `events` queued when it
/// existed, in the caller's transaction.
pub async fn end<D: Dialect>(
    conn: &mut D::Conn,
    key: &SessionKey,
    events: &[OutgoingMail],
) -> Result<bool, sqlx::Error> {
    let existed = delete::<D>(conn, key).await?;
    if existed {
        super::outbox::insert_events::<D>(conn, events).await?;
    }
    Ok(existed)
}
