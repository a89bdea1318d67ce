//! One secret per deployment (docs/operations.md, "One secret per deployment").
//!
//! Every instance of a deployment must hold the same server secret: a code is stored as an HMAC
//! keyed with it and checked by whichever instance the code is submitted to, and a queued mail
//! is sealed with it and opened by whichever worker claims it (SPEC §3 Codes). Two instances
//! that each generated their own `data/secret` answer a code sent through the other
//! `CODE_INVALID`, about half of the time behind a load balancer: the "works sometimes" that
//! nobody can explain. So the deployment records a fingerprint of its secret
//! ([`Secret::fingerprint`]) next to the state bound to it ([`SecretRecord`]): the first
//! instance to start records its own, every later one compares, and one that differs refuses
//! to start ([`crate::app::start`]) with a message naming `MAILCODE_SECRET_FILE`. `/readyz`
//! checks again, since the record may change under a running instance (a rotation, or a Redis
//! without persistence that forgot it and had another instance record its own), and answers
//! 503 `SECRET_MISMATCH` so that the load balancer stops sending it visitors.
//!
//! Must not: print, log or store the secret; only fingerprints, which are not secrets.
use std::path::Path;
use std::time::Duration;

use crate::crypto::Secret;
use crate::store::{bounded, SecretRecord, StoreResult};

/// How this instance's secret compares with the deployment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing was recorded: this instance's fingerprint now is the deployment's.
    Recorded,
    /// The deployment's secret is this instance's.
    Same,
    /// The deployment's secret is another one, whose fingerprint this is.
    Mismatch { recorded: String },
}

/// Compares this instance's secret with the deployment's, recording it when none is; bounded
/// by `limit` (the store timeout).
pub async fn check(
    record: &dyn SecretRecord,
    secret: &Secret,
    limit: Duration,
) -> StoreResult<Verdict> {
    let ours = secret.fingerprint();
    Ok(
        match bounded(limit, record.record_if_absent(&ours)).await? {
            None => Verdict::Recorded,
            Some(recorded) if recorded == ours => Verdict::Same,
            Some(recorded) => Verdict::Mismatch { recorded },
        },
    )
}

/// What `mailcode secret rotate` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The fingerprint recorded before, if any.
    pub previous: Option<String>,
    /// This instance's, now the deployment's.
    pub current: String,
}

/// Makes this instance's secret the deployment's (`mailcode secret rotate`).
pub async fn rotate(
    record: &dyn SecretRecord,
    secret: &Secret,
    limit: Duration,
) -> StoreResult<Rotated> {
    let current = secret.fingerprint();
    let previous = bounded(limit, record.replace(&current)).await?;
    Ok(Rotated { previous, current })
}

/// Why an instance refuses to start, and what the operator does about it.
pub fn mismatch_message(ours: &str, recorded: &str, secret_file: &Path) -> String {
    format!(
        "this instance's server secret (fingerprint {ours}, from {file}) is not the one this \
         deployment uses (fingerprint {recorded}, recorded in the shared store by the first \
         instance to start or by `mailcode secret rotate`): a code sent through one instance would be refused by the other \
         (401 CODE_INVALID). Every instance must use the same secret file: set \
         MAILCODE_SECRET_FILE (or --secret-file) to a copy of the file the running instances \
         use (`mailcode secret show` prints the fingerprints). To change the deployment's secret \
         on purpose, put the new file on every instance, run `mailcode secret rotate` once, then \
         restart every instance (docs/operations.md, \"One secret per deployment\").",
        file = secret_file.display()
    )
}

/// What rotating means for the state sealed under the old secret, said by `secret rotate`.
pub const ROTATION_EFFECTS: &str = "\
Sessions and accounts are not affected (sessions are keyed by a hash of their id, passwords by argon2id).
Codes issued under the old secret no longer verify: visitors who were waiting for one ask for a new code.
Mail still queued under the old secret cannot be opened: it is dropped unsent and counted (mailcode_mail_dropped_total).
Instances still running with the old secret now answer /readyz with 503 SECRET_MISMATCH and would refuse to start again: restart every instance with the new secret file.";
