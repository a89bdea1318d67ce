//! The webhook signing secret (SPEC §7): `whsec_` and the base64 of 32 random bytes, the form
//! the Standard Webhooks libraries take, in a file generated on first run (mode 0600).
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use std::path::Path;

const PREFIX: &str = "whsec_";

/// The key that signs every webhook. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("cannot read or create the webhook secret file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the webhook secret file {path} does not hold whsec_ and base64 (at least 24 bytes): give every instance the same file the receivers were configured with (--webhook-secret-file / MAILCODE_WEBHOOK_SECRET_FILE), or delete it to generate a new one")]
    Malformed { path: String },
}

impl WebhookSecret {
    /// Reads the secret, or creates one (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, WebhookSecretError> {
        let shown = || path.display().to_string();
        let io = |source| WebhookSecretError::Io {
            path: shown(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                let b64 = text.strip_prefix(PREFIX).unwrap_or(text);
                match STANDARD.decode(b64) {
                    Ok(key) if key.len() >= 24 => Ok(WebhookSecret(key)),
                    _ => Err(WebhookSecretError::Malformed { path: shown() }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let text = format!("{PREFIX}{}\n", STANDARD.encode(&key));
                crate::crypto::write_private(path, text.as_bytes()).map_err(io)?;
                Ok(WebhookSecret(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The `webhook-signature` of `body` sent as `id` at `timestamp` (Unix seconds): `v1,` and
    /// the base64 HMAC-SHA256 of `id.timestamp.body`, by the Standard Webhooks library.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        standardwebhooks::Webhook::from_bytes(self.0.clone())
            .and_then(|w| w.sign(id, timestamp, body.as_bytes()))
            // Signing fails only for a body that is not UTF-8, which a `&str` cannot be.
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_private_and_verifies_with_the_library() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub/webhook-secret");
        let a = WebhookSecret::load_or_create(&path).expect("created");
        let b = WebhookSecret::load_or_create(&path).expect("read");
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(text.starts_with("whsec_"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sig = a.sign("msg_1", 1_800_000_000, "{\"a\":1}");
        assert_eq!(sig, b.sign("msg_1", 1_800_000_000, "{\"a\":1}"));
        assert!(sig.starts_with("v1,"));
        assert!(!format!("{a:?}").contains(&text[6..12]));
        // The receiver's side: the library verifies with the file's text as it is.
        let receiver = standardwebhooks::Webhook::new(text.trim()).expect("secret");
        let now = chrono::Utc::now().timestamp();
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", "msg_1".parse().unwrap());
        h.insert("webhook-timestamp", now.to_string().parse().unwrap());
        h.insert(
            "webhook-signature",
            a.sign("msg_1", now, "{\"a\":1}").parse().unwrap(),
        );
        receiver.verify(b"{\"a\":1}", &h).expect("verifies");
        assert!(receiver.verify(b"{\"a\":2}", &h).is_err());
        std::fs::write(dir.path().join("bad"), "whsec_%%%").expect("write");
        assert!(matches!(
            WebhookSecret::load_or_create(&dir.path().join("bad")),
            Err(WebhookSecretError::Malformed { .. })
        ));
    }
}
