//! Per-request context that code deep in the response path needs without threading it through
//! every call: the request id (for `INTERNAL` answers and logs) and the language of `msg`.
use crate::i18n::Lang;

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub lang: Lang,
}

tokio::task_local! {
    pub static CURRENT: RequestContext;
}

pub fn request_id() -> String {
    CURRENT
        .try_with(|c| c.id.clone())
        .unwrap_or_else(|_| "-".into())
}

pub fn lang() -> Lang {
    CURRENT.try_with(|c| c.lang).unwrap_or_default()
}
