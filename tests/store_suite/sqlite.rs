//! The suite against SQLite, each test in its own database file.
use mailcode::store::{sqlite::SqliteStore, CodeDesk, InSteps, MailQueue, SessionStore, UserStore};
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

#[tokio::test]
async fn a_code_request_writes_all_or_nothing() {
    let store = open().await;
    let sessions: Arc<dyn SessionStore> = Arc::new(store.clone());
    let queue: Arc<dyn MailQueue> = Arc::new(store);
    let desk: Arc<dyn CodeDesk> = Arc::new(InSteps {
        sessions: sessions.clone(),
        mail: queue.clone(),
    });
    crate::suite::a_code_request_writes_all_or_nothing(desk, sessions, queue).await
}
