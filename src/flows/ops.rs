//! The operator's view: readiness (`/readyz`) and the deployment's secret (the start-up check,
//! `mailcode secret show|rotate`). The HTTP route and the command line only render these.
use super::*;
use crate::deployment::{Rotated, Verdict};
use crate::store::bounded;

/// What `/readyz` reports: every store, the deployment's secret, mail.
#[derive(Debug)]
pub struct Readiness {
    pub sessions: Result<(), StoreError>,
    pub users: Result<(), StoreError>,
    /// This instance's secret against the deployment's (`crate::deployment`).
    pub secret: Result<Verdict, StoreError>,
    /// This instance's secret fingerprint; not a secret: operators compare them across
    /// instances.
    pub fingerprint: String,
    /// Whether mail can leave now.
    pub mail: Result<(), String>,
    /// The outbox transport (development) rather than SMTP.
    pub outbox: bool,
}

impl Core {
    /// Every store answers within the store timeout; this instance's secret is the
    /// deployment's (the record may have changed since start, by a rotation or a Redis that
    /// forgot it); mail can leave. The checks run at once, so an answer takes one store
    /// timeout at most, not one per store.
    pub async fn readiness(&self) -> Readiness {
        let limit = self.policy.store_timeout;
        let (sessions, users, secret, mail) = tokio::join!(
            bounded(limit, self.stores.health.sessions.ping()),
            bounded(limit, self.stores.health.users.ping()),
            self.check_deployment_secret(),
            async {
                match tokio::time::timeout(limit, self.transport.check()).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".into()),
                }
            },
        );
        Readiness {
            sessions,
            users,
            secret,
            fingerprint: self.secret_fingerprint(),
            mail,
            outbox: self.transport.is_outbox(),
        }
    }

    /// This instance's secret fingerprint (`crate::crypto::Secret::fingerprint`).
    pub fn secret_fingerprint(&self) -> String {
        self.secret.fingerprint()
    }

    /// Compares this instance's secret with the deployment's, recording it when none is.
    pub async fn check_deployment_secret(&self) -> Result<Verdict, StoreError> {
        crate::deployment::check(
            &*self.stores.deployment,
            &self.secret,
            self.policy.store_timeout,
        )
        .await
    }

    /// The fingerprint the deployment records, if any (`mailcode secret show`).
    pub async fn deployment_secret(&self) -> Result<Option<String>, StoreError> {
        bounded(self.policy.store_timeout, self.stores.deployment.recorded()).await
    }

    /// Makes this instance's secret the deployment's (`mailcode secret rotate`).
    pub async fn rotate_deployment_secret(&self) -> Result<Rotated, StoreError> {
        crate::deployment::rotate(
            &*self.stores.deployment,
            &self.secret,
            self.policy.store_timeout,
        )
        .await
    }

    /// The webhook deliveries given up after 24 h, newest first (`mailcode webhooks failed`).
    pub async fn failed_webhooks(&self) -> Result<Vec<crate::store::FailedDelivery>, StoreError> {
        bounded(
            self.policy.store_timeout,
            self.stores.dead_letters.failed(1000),
        )
        .await
    }

    /// Queues a given-up delivery again, for another 24 h (`mailcode webhooks retry`); false
    /// when none has that id.
    pub async fn retry_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let again = bounded(
            self.policy.store_timeout,
            self.stores
                .dead_letters
                .retry(id, now, now + crate::webhooks::RETRY_FOR_MS),
        )
        .await?;
        if again {
            self.webhook_wake.notify_one();
        }
        Ok(again)
    }
}
