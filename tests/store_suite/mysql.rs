//! The suite against MariaDB (a real server started by `support/mariadb_server.rs`), each test in
//! its own database on one shared server; then what only a networked SQL store has to show:
//! several instances sharing the mail queue, and surviving the server going away.
#[path = "../support/mariadb_server.rs"]
mod mariadb_server;

use mailcode::domain::CodePurpose;
use mailcode::store::mysql::MySqlStore;
use mailcode::store::*;
use mariadb_server::MariaDb;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::suite::{new_user, session, Backend, Users, NOW};

/// The app's default store timeout (`Policy::store_timeout`).
const TIMEOUT: Duration = Duration::from_millis(1500);
const MIN: i64 = 60_000;

async fn open_on(url: &str) -> MySqlStore {
    MySqlStore::open(url, TIMEOUT)
        .await
        .expect("the MySQL store opens")
}

async fn open() -> MySqlStore {
    let url = MariaDb::shared().fresh_database("suite").await;
    open_on(&url).await
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
crate::sql_store_tests!(users, queue);

/// Two stores, two pools, on one database: two instances.
async fn secret_records() -> (Arc<dyn SecretRecord>, Arc<dyn SecretRecord>) {
    let url = MariaDb::shared().fresh_database("secret").await;
    (Arc::new(open_on(&url).await), Arc::new(open_on(&url).await))
}

crate::secret_record_tests!(secret_records);

async fn key_records() -> (Arc<dyn SigningKeyRecord>, Arc<dyn SigningKeyRecord>) {
    let url = MariaDb::shared().fresh_database("keys").await;
    (Arc::new(open_on(&url).await), Arc::new(open_on(&url).await))
}

crate::signing_key_tests!(key_records);

#[tokio::test]
async fn accounts_older_than_user_ids_get_one() {
    let url = MariaDb::shared().fresh_database("userids").await;
    let clear = async {
        let pool = sqlx::MySqlPool::connect(&url).await.expect("connects");
        sqlx::query("UPDATE users SET public_id = NULL")
            .execute(&pool)
            .await
            .expect("cleared");
    };
    let reopen = || async { Arc::new(open_on(&url).await) as Arc<dyn Users> };
    crate::suite::accounts_older_than_user_ids_get_one(reopen().await, clear, reopen).await
}

fn mail(n: usize) -> OutgoingMail {
    OutgoingMail {
        mail_ref: format!("race{n}"),
        code: None,
        to: format!("u{n}@example.com"),
        order: "sealed order".into(),
        expires_at: NOW + 10 * MIN,
        created_at: NOW,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_claim_the_same_mail() {
    let url = MariaDb::shared().fresh_database("claim").await;
    // Two stores, two pools: as two mailcode instances on one database.
    let a = Arc::new(open_on(&url).await);
    let b = Arc::new(open_on(&url).await);
    crate::suite::workers_never_claim_the_same_mail(a, b).await
}

#[tokio::test]
async fn a_username_that_reads_like_an_index_name_is_still_a_username() {
    let u = open().await;
    u.create_user(&new_user("users_email", "a@example.com"))
        .await
        .unwrap();
    assert!(matches!(
        u.create_user(&new_user("users_email", "b@example.com"))
            .await,
        Err(CreateUserError::UsernameTaken)
    ));
    assert!(matches!(
        u.create_user(&new_user("other", "a@example.com")).await,
        Err(CreateUserError::EmailTaken)
    ));
}

#[tokio::test]
async fn mariadb_urls_are_accepted() {
    let url = MariaDb::shared().fresh_database("scheme").await;
    let store = open_on(&url.replacen("mysql://", "mariadb://", 1)).await;
    Health::ping(&store).await.unwrap();
}

crate::networked_sql_tests!(MariaDb, sqlx::MySqlConnection);

/// Migration 0003 and the store's rekey (`store::rekey`), as on SQLite; two instances opening at
/// once recompute the keys once, neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_of_an_older_version_are_recomputed_when_the_store_opens() {
    use crate::suite::{stale_keys_were_recomputed, STALE_ACCOUNTS};
    let url = MariaDb::shared().fresh_database("rekey").await;
    drop(open_on(&url).await);
    let raw = sqlx::MySqlPool::connect(&url)
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
    let (a, b) = tokio::join!(open_on(&url), open_on(&url));
    stale_keys_were_recomputed(Arc::new(a)).await;
    stale_keys_were_recomputed(Arc::new(b)).await;
    stale_keys_were_recomputed(Arc::new(open_on(&url).await)).await;
}
