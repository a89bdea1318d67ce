//! The deployment's secret fingerprint on Redis (`SecretRecord`).
use super::*;

/// `Pdeployment:secret`, one key without TTL (a slot of its own on a Cluster). `SET … NX GET`
/// (Redis 7.0, which `connect` requires) records and answers what was there in one command.
/// Without persistence a restarted Redis has forgotten it: the next check (`/readyz`) records
/// it again, and an instance whose secret differs from the one recorded then says so.
#[async_trait]
impl SecretRecord for RedisStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("NX")
            .arg("GET")
            .to_owned();
        // Sent twice, the second answers the fingerprint the first recorded: the same verdict.
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("GET")
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("GET")
            .arg(self.keys.deployment_secret())
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }
}
