//! The suite against a Redis Cluster of three masters (one per test binary, one key prefix per
//! test), then what only a cluster has to prove: a user's sessions, each in its own slot, are
//! listed and revoked together, and the limits of one request (keys in different slots) count
//! and refuse as on one Redis.
#[path = "../support/redis_cluster.rs"]
mod cluster_servers;

use crate::suite::Backend;
use crate::suite::{key, session, NOW};
use cluster_servers::RedisCluster;
use mailcode::store::redis::{Keys, RedisStore};
use mailcode::store::{Limit, LimitCheck, LimitStore, Outbox, SecretRecord, SessionStore};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "c{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn open(prefix: &str) -> RedisStore {
    RedisStore::connect(
        &RedisCluster::shared().url(),
        prefix,
        Duration::from_secs(2),
    )
    .await
    .expect("redis cluster connects")
}

async fn sessions() -> Arc<dyn Backend> {
    Arc::new(open(&unique_prefix()).await)
}

crate::session_store_tests!(sessions);

async fn queues() -> (Arc<dyn Outbox>, Arc<dyn Outbox>, Arc<dyn Backend>) {
    let prefix = unique_prefix();
    let a = Arc::new(open(&prefix).await);
    (a.clone(), Arc::new(open(&prefix).await), a)
}

crate::mail_queue_tests!(queues);

async fn secret_records() -> (Arc<dyn SecretRecord>, Arc<dyn SecretRecord>) {
    let prefix = unique_prefix();
    (Arc::new(open(&prefix).await), Arc::new(open(&prefix).await))
}

crate::secret_record_tests!(secret_records);

/// On a Cluster: the same writes, in steps.
#[tokio::test]
async fn a_code_request_writes_all_or_nothing() {
    let s = open(&unique_prefix()).await;
    crate::suite::a_code_request_writes_all_or_nothing(
        Arc::new(s.clone()),
        Arc::new(s.clone()),
        Arc::new(s),
    )
    .await
}

/// The slot of a key, as the cluster computes it.
async fn slot(name: &str) -> i64 {
    let url = RedisCluster::shared().node_urls().remove(0);
    let mut con = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(name)
        .query_async(&mut con)
        .await
        .expect("CLUSTER KEYSLOT")
}

#[tokio::test]
async fn a_users_sessions_in_different_slots_are_listed_and_revoked_together() {
    let prefix = unique_prefix();
    let s = open(&prefix).await;
    let names = Keys::new(&prefix);
    let mut slots = HashSet::new();
    for n in 1..=8 {
        s.create_session(&session(n, Some(31))).await.unwrap();
        slots.insert(slot(&names.session(&key(n))).await);
    }
    s.create_session(&session(9, Some(32))).await.unwrap();
    assert!(slots.len() > 1, "sessions spread over slots: {slots:?}");
    let listed = s.list_user_sessions(31, NOW).await.unwrap();
    let listed: Vec<_> = listed.iter().map(|r| r.key.clone()).collect();
    assert_eq!(listed.len(), 8, "{listed:?}");
    assert_eq!(
        s.revoke_user_sessions(31, Some(&key(3)), &[])
            .await
            .unwrap(),
        7
    );
    let left = s.list_user_sessions(31, NOW).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, key(3));
    assert_eq!(s.revoke_user_sessions(31, None, &[]).await.unwrap(), 1);
    assert!(s.list_user_sessions(31, NOW).await.unwrap().is_empty());
    for n in 1..=8 {
        assert!(s.load_session(&key(n), NOW).await.unwrap().is_none());
    }
    // Another user's session is untouched.
    assert!(s.load_session(&key(9), NOW).await.unwrap().is_some());
}

#[tokio::test]
async fn limits_of_one_request_in_different_slots_count_and_refuse() {
    let prefix = unique_prefix();
    let s = open(&prefix).await;
    let names = Keys::new(&prefix);
    let hour = Duration::from_secs(3600);
    let checks = [
        LimitCheck::hit("ip:code:203.0.113.7", 30, hour),
        LimitCheck::peek("guess:a@example.com", 10),
        LimitCheck::hit("email:a@example.com", 5, hour).spaced("login", Duration::from_secs(60)),
    ];
    let mut slots = HashSet::new();
    for c in &checks {
        slots.insert(slot(&names.limit(&c.key)).await);
    }
    assert!(slots.len() > 1, "limit keys spread over slots: {slots:?}");
    assert_eq!(s.hit_limits(&checks, NOW).await.unwrap(), Limit::Allowed);
    // The cooldown (the spacing of the address's count) refuses a second request within its
    // minute, and counts nothing.
    assert!(matches!(
        s.hit_limits(&checks, NOW + 1_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 59_000
        }
    ));
    for _ in 0..4 {
        s.hit_limit("email:a@example.com", 5, hour, NOW + 2_000)
            .await
            .unwrap();
    }
    assert!(matches!(
        s.hit_limit("email:a@example.com", 5, hour, NOW + 2_000)
            .await
            .unwrap(),
        Limit::Limited { .. }
    ));
    assert_eq!(
        s.peek_limit("ip:code:203.0.113.7", 30, NOW + 2_000)
            .await
            .unwrap(),
        Limit::Allowed
    );
}
