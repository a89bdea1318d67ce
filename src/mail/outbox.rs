//! The development outbox: mail is written to `data/outbox/*.eml` (with a small `.json` beside
//! each, for the `/dev/outbox` page) instead of being sent. Never used with `--smtp-url`.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::templates::Rendered;
use crate::store::OutgoingMail;

#[derive(Clone, Debug)]
pub struct Outbox {
    dir: PathBuf,
}

/// What `/dev/outbox` shows of one mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub file: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub created_at: i64,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Outbox { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub async fn write(
        &self,
        mail: &OutgoingMail,
        written: &Rendered,
        eml: &[u8],
    ) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let stem = format!("{}-{}", mail.created_at, mail.mail_ref);
        let entry = OutboxEntry {
            file: format!("{stem}.eml"),
            to: mail.to.clone(),
            subject: written.subject.clone(),
            text: written.text.clone(),
            created_at: mail.created_at,
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        // The .json first: the .eml appearing is what marks the mail as written.
        tokio::fs::write(self.dir.join(format!("{stem}.json")), json).await?;
        tokio::fs::write(self.dir.join(&entry.file), eml).await
    }

    pub async fn check(&self) -> Result<(), String> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))
    }

    /// The newest mails first, at most `max`.
    pub async fn list(&self, max: usize) -> std::io::Result<Vec<OutboxEntry>> {
        let mut entries = Vec::new();
        let mut rd = match tokio::fs::read_dir(&self.dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e),
        };
        while let Some(de) = rd.next_entry().await? {
            let path = de.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            if let Ok(bytes) = tokio::fs::read(&path).await {
                if let Ok(entry) = serde_json::from_slice::<OutboxEntry>(&bytes) {
                    entries.push(entry);
                }
            }
        }
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.file.cmp(&a.file)));
        entries.truncate(max);
        Ok(entries)
    }
}
