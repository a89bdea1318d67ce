//! What the application's own backend asks (SPEC §6): access tokens and the keys that verify
//! them. Forward authentication needs no flow of its own: it is [`Core::load_session`].
use super::*;
use crate::tokens::{KeyRing, Minted, TokenError};

impl From<TokenError> for FlowError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Store(s) => FlowError::Store(s),
            other => FlowError::Internal(other.to_string()),
        }
    }
}

impl Core {
    /// SPEC §6 `POST /api/token`: an access token for the signed-in user of `session`. A
    /// revoked session or a disabled user has no live session, so gets none.
    pub async fn issue_access_token(&self, session: Option<&SessionRecord>) -> FlowResult<Minted> {
        let (s, u) = require_user(session)?;
        // An account deleted since the session began has no id to name.
        let user_id = u.public_id.ok_or(FlowError::NotLoggedIn)?;
        let minted = self.tokens.mint(s, u, user_id, self.now()).await?;
        metrics::counter!(crate::metrics::TOKENS_ISSUED).increment(1);
        Ok(minted)
    }

    /// The published keys (`/.well-known/jwks.json`).
    pub async fn signing_keys(&self) -> FlowResult<Arc<KeyRing>> {
        Ok(self.tokens.ring(self.now()).await?)
    }

    /// The `iss` of access tokens.
    pub fn token_issuer(&self) -> &str {
        self.tokens.issuer()
    }

    /// Names this instance's origin as the issuer when the settings name none.
    pub fn listening_at(&self, addr: std::net::SocketAddr) {
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        self.tokens.listening_at(format!("http://{host}"));
    }

    /// `mailcode keys rotate`: the new generation, and when the one before stops being
    /// published.
    pub async fn rotate_signing_keys(&self) -> FlowResult<(i64, Millis)> {
        Ok(self.tokens.rotate(self.now()).await?)
    }
}
