//! Account rules every SQL dialect shares.
use super::{Dialect, SqlRow, Val};
use crate::domain::UserId;

/// Gives every account older than user ids (SPEC §6) one, made from its creation time, when
/// the store opens. An account that got one meanwhile (another instance starting at the same
/// time) keeps it: the update only fills an empty id. One indexed lookup when there is nothing
/// to do.
pub async fn assign_user_ids<D: Dialect>(conn: &mut D::Conn) -> Result<u64, sqlx::Error> {
    let mut assigned = 0;
    loop {
        let rows = D::fetch_all(conn, D::SQL.users_without_public_id, &[]).await?;
        if rows.is_empty() {
            return Ok(assigned);
        }
        for r in &rows {
            let id = UserId::new(r.int("created_at")?).to_text();
            let args = [Val::Int(r.int("id")?), Val::Text(&id)];
            assigned += D::execute(conn, D::SQL.set_public_id, &args).await?;
        }
    }
}
