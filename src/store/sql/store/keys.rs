//! [`SigningKeyRecord`] and [`SecretRecord`] on every SQL dialect: the rows of the users'
//! database that belong to the deployment rather than to an account.
use async_trait::async_trait;

use super::SqlStore;
use crate::clock::Millis;
use crate::store::sql::{keys, Dialect, SqlRow, Val};
use crate::store::{KeyGeneration, SecretRecord, SigningKeyRecord, StoreResult};

#[async_trait]
impl<D: Dialect> SigningKeyRecord for SqlStore<D> {
    async fn key_generations(&self, now: Millis) -> StoreResult<Vec<KeyGeneration>> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            keys::generations::<D>(&mut conn, now).await
        })
        .await
    }

    async fn rotate_keys(&self, now: Millis, retire_at: Millis) -> StoreResult<KeyGeneration> {
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            let new = keys::rotate::<D>(&mut tx, now, retire_at).await?;
            tx.commit().await?;
            Ok(new)
        })
        .await
    }
}

/// The fingerprint of the deployment's secret (`crate::store::secret`): statements on the write
/// connection, one at a time; the insert that does nothing when the row exists is the atomic
/// step ([`crate::store::sql::DeploymentSql`]).
#[async_trait]
impl<D: Dialect> SecretRecord for SqlStore<D> {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let args = [Val::Text(fingerprint)];
        let inserted = self
            .write(D::SQL.deployment.record_if_absent, &args)
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        self.recorded().await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let before = self.recorded().await?;
        self.write(D::SQL.deployment.replace, &[Val::Text(fingerprint)])
            .await?;
        Ok(before)
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            let row = D::fetch_optional(&mut conn, D::SQL.deployment.recorded, &[]).await?;
            row.map(|r| r.text("secret_fingerprint")).transpose()
        })
        .await
    }
}
