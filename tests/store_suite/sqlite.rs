//! The suite against SQLite, each test in its own database file.
use crate::suite::{Backend, Steps, Users};
use mailcode::store::{
    sqlite::SqliteStore, CodeRequestWrites, Outbox, SecretRecord, SigningKeyRecord, UserStore,
};
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

async fn sessions() -> Arc<dyn Backend> {
    Arc::new(open().await)
}
async fn users() -> Arc<dyn Users> {
    Arc::new(open().await)
}
async fn queue() -> (Arc<dyn Backend>, Arc<dyn Outbox>) {
    let store = open().await;
    (Arc::new(store.clone()), Arc::new(store))
}

crate::session_store_tests!(sessions);

/// Two stores on one database file: two processes on one data directory.
async fn secret_records() -> (Arc<dyn SecretRecord>, Arc<dyn SecretRecord>) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let url = format!("sqlite://{}/t.db", dir.display());
    let open = || SqliteStore::open(&url, Duration::from_secs(2));
    let a = open().await.expect("sqlite opens");
    let b = open().await.expect("sqlite opens again");
    (Arc::new(a), Arc::new(b))
}

crate::secret_record_tests!(secret_records);

async fn key_records() -> (Arc<dyn SigningKeyRecord>, Arc<dyn SigningKeyRecord>) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let url = format!("sqlite://{}/t.db", dir.display());
    let open = || SqliteStore::open(&url, Duration::from_secs(2));
    let a = open().await.expect("sqlite opens");
    let b = open().await.expect("sqlite opens again");
    (Arc::new(a), Arc::new(b))
}

crate::signing_key_tests!(key_records);

#[tokio::test]
async fn accounts_older_than_user_ids_get_one() {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let url = format!("sqlite://{}/t.db", dir.display());
    let clear = async {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connects");
        sqlx::query("UPDATE users SET public_id = NULL")
            .execute(&pool)
            .await
            .expect("cleared");
        pool.close().await;
    };
    let reopen = || async {
        Arc::new(
            SqliteStore::open(&url, Duration::from_secs(2))
                .await
                .expect("sqlite opens"),
        ) as Arc<dyn Users>
    };
    crate::suite::accounts_older_than_user_ids_get_one(reopen().await, clear, reopen).await
}
crate::sql_store_tests!(users, queue);

#[tokio::test]
async fn a_code_request_writes_all_or_nothing() {
    let store = open().await;
    let sessions: Arc<dyn Backend> = Arc::new(store.clone());
    let queue: Arc<dyn Outbox> = Arc::new(store);
    let desk: Arc<dyn CodeRequestWrites> = Arc::new(Steps {
        backend: sessions.clone(),
        outbox: queue.clone(),
    });
    crate::suite::a_code_request_writes_all_or_nothing(desk, sessions, queue).await
}

/// Each store answers lookups by address from its own database, whichever runtime asks: an
/// HTTP thread's (`mailcode::threads`, with a batcher of its own), another single-threaded one
/// or the multi-threaded one, and also after another store was opened and closed on the same
/// thread.
async fn each_store_answers_from_its_own_database() {
    use crate::suite::{email, new_user};
    let first = open().await;
    first
        .create_user(&new_user("alice", "alice@example.com"))
        .await
        .unwrap();
    let found = first.find_by_email(&email("alice@example.com")).await;
    assert_eq!(found.unwrap().map(|u| u.username), Some("alice".into()));
    drop(first);

    let second = open().await;
    second
        .create_user(&new_user("bob", "bob@example.com"))
        .await
        .unwrap();
    let (a, b) = (email("alice@example.com"), email("bob@example.com"));
    let (alice, bob) = tokio::join!(second.find_by_email(&a), second.find_by_email(&b));
    assert_eq!(
        alice.unwrap().map(|u| u.username),
        None,
        "alice is not in the second store"
    );
    assert_eq!(bob.unwrap().map(|u| u.username), Some("bob".into()));
}

#[tokio::test]
async fn lookups_on_a_single_threaded_runtime_answer_from_their_own_store() {
    each_store_answers_from_its_own_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_on_a_multi_threaded_runtime_answer_from_their_own_store() {
    each_store_answers_from_its_own_database().await
}

#[test]
fn lookups_on_an_http_thread_answer_from_their_own_store() {
    mailcode::threads::spawn(
        "http-thread".into(),
        each_store_answers_from_its_own_database,
    )
    .expect("the thread starts")
    .join()
    .expect("the lookups answered");
}

/// Migration 0003 and the store's rekey (`store::rekey`): accounts written with the first key
/// version get NFKC_Casefold keys when the store opens, the older account keeping a key two
/// names now share; opening again changes nothing.
#[tokio::test]
async fn keys_of_an_older_version_are_recomputed_when_the_store_opens() {
    use crate::suite::{stale_keys_were_recomputed, STALE_ACCOUNTS};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    drop(
        SqliteStore::open(&url, Duration::from_secs(2))
            .await
            .expect("opens"),
    );
    let raw = sqlx::SqlitePool::connect(&url)
        .await
        .expect("raw connection");
    for (name, key, email) in STALE_ACCOUNTS {
        sqlx::query(
            "INSERT INTO users (username, username_key, username_key_version, email, \
             password_hash, created_at) VALUES (?, ?, 1, ?, '$argon2id$fake', 0)",
        )
        .bind(name)
        .bind(key)
        .bind(email)
        .execute(&raw)
        .await
        .expect("an old row");
    }
    raw.close().await;
    for _ in 0..2 {
        let store = SqliteStore::open(&url, Duration::from_secs(2))
            .await
            .expect("reopens");
        stale_keys_were_recomputed(Arc::new(store)).await;
    }
}
