//! Per-request context that code deep in the response path needs without threading it through
//! every call: the request id (for `INTERNAL` answers and logs), the language of `msg`, and
//! what the middleware resolved about the client (the `ClientMeta` extractor reads it here, so
//! a request whose handler does not ask for it costs no copy of it).
use crate::http::extract::ClientMeta;
use crate::i18n::Lang;

#[derive(Debug)]
pub struct RequestContext {
    pub id: RequestId,
    pub lang: Lang,
    pub meta: ClientMeta,
}

/// 16 hex digits of randomness, kept on the stack: made for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 16]);

impl RequestId {
    pub fn random() -> RequestId {
        let mut digits = [0; 16];
        crate::crypto::put_hex(&rand::random::<[u8; 8]>(), &mut digits);
        RequestId(digits)
    }
    pub fn as_str(&self) -> &str {
        // Hex digits only, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("-")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    pub static CURRENT: RequestContext;
}

pub fn request_id() -> String {
    CURRENT
        .try_with(|c| c.id.as_str().to_owned())
        .unwrap_or_else(|_| "-".into())
}

pub fn lang() -> Lang {
    CURRENT.try_with(|c| c.lang).unwrap_or_default()
}

/// The client as the middleware resolved it; `None` outside a request.
pub fn client_meta() -> Option<ClientMeta> {
    CURRENT.try_with(|c| c.meta.clone()).ok()
}
