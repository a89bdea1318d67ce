//! The suite against SQLite, each test in its own database file.
use mailcode::store::{sqlite::SqliteStore, MailQueue, SessionStore, UserStore};
use std::sync::Arc;
use std::time::Duration;

async fn open() -> SqliteStore {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteStore::open(
        &format!("sqlite://{}/t.db", dir.display()),
        Duration::from_secs(2),
    )
    .await
    .expect("sqlite opens")
}

async fn sessions() -> Arc<dyn SessionStore> {
    Arc::new(open().await)
}
async fn users() -> Arc<dyn UserStore> {
    Arc::new(open().await)
}
async fn queue() -> Arc<dyn MailQueue> {
    Arc::new(open().await)
}

crate::session_store_tests!(sessions);
crate::sql_store_tests!(users, queue);
