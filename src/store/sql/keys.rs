//! The signing-key generations ([`crate::store::SigningKeyRecord`]) on every SQL dialect.
use super::{Dialect, SqlRow, Val};
use crate::clock::Millis;
use crate::store::KeyGeneration;

async fn read<D: Dialect>(conn: &mut D::Conn) -> Result<Vec<KeyGeneration>, sqlx::Error> {
    let rows = D::fetch_all(conn, D::SQL.keys.generations, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(KeyGeneration {
                generation: r.int("generation")?,
                created_at: r.int("created_at")?,
                retires_at: r.opt_int("retires_at")?,
            })
        })
        .collect()
}

/// Every generation, oldest first, making the first one when there is none. Instances that
/// start together may both try to make it: the insert ignores a generation that exists, so
/// they end up with the same one.
pub async fn generations<D: Dialect>(
    conn: &mut D::Conn,
    now: Millis,
) -> Result<Vec<KeyGeneration>, sqlx::Error> {
    let found = read::<D>(conn).await?;
    if !found.is_empty() {
        return Ok(found);
    }
    D::execute(conn, D::SQL.keys.add, &[Val::Int(1), Val::Int(now)]).await?;
    read::<D>(conn).await
}

/// Starts the generation after the newest and retires the live ones before it at `retire_at`
/// (one already retiring keeps its earlier time). Two rotations at once start the same
/// generation once.
pub async fn rotate<D: Dialect>(
    conn: &mut D::Conn,
    now: Millis,
    retire_at: Millis,
) -> Result<KeyGeneration, sqlx::Error> {
    let next = generations::<D>(conn, now)
        .await?
        .last()
        .map_or(1, |g| g.generation + 1);
    D::execute(conn, D::SQL.keys.add, &[Val::Int(next), Val::Int(now)]).await?;
    D::execute(
        conn,
        D::SQL.keys.retire,
        &[Val::Int(retire_at), Val::Int(next)],
    )
    .await?;
    let all = read::<D>(conn).await?;
    all.into_iter()
        .find(|g| g.generation == next)
        .ok_or(sqlx::Error::RowNotFound)
}
