//! What only a networked SQL store has to show, the same on MySQL/MariaDB and PostgreSQL: a
//! server that goes away and comes back, a row locked elsewhere, the sweep. Expanded in each
//! backend's module, where `open_on`, `open`, `mail`, `TIMEOUT` and `MIN` are that backend's.

/// `networked_sql_tests!(Server, Connection)`: `Server` is the harness type (`start`, `shared`),
/// `Connection` the sqlx connection type a second client locks rows with.
#[macro_export]
macro_rules! networked_sql_tests {
    ($server:ident, $conn:ty) => {
        /// Runs `op` and checks that it fails with `Unavailable` within 2 s (SPEC §3 Robustness).
        async fn unavailable_in_time<T: std::fmt::Debug>(
            what: &str,
            op: impl std::future::Future<Output = StoreResult<T>>,
        ) {
            let started = Instant::now();
            let r = op.await;
            let took = started.elapsed();
            assert!(
                matches!(r, Err(StoreError::Unavailable(_))),
                "{what}: expected Unavailable, got {r:?}"
            );
            assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_stopped_server_is_unavailable_and_the_store_recovers() {
            // A private server: this test stops it.
            let server = tokio::task::spawn_blocking($server::start).await.unwrap();
            server.create_database("recovery").await;
            let store = open_on(&server.url("recovery")).await;
            let rec = session(1, Some(7));
            store.create_session(&rec).await.unwrap();
            store.enqueue(&mail(1)).await.unwrap();

            let server = Arc::new(server);
            let s = server.clone();
            tokio::task::spawn_blocking(move || s.stop()).await.unwrap();

            // All at once: each waits out the pool's acquire timeout (the pool keeps trying in case
            // the server is only restarting), and each must still answer within 2 s.
            let email = $crate::suite::email("a@example.com");
            let new = new_user("x", "x@example.com");
            futures::join!(
                unavailable_in_time("load_session", store.load_session(&rec.key, NOW)),
                unavailable_in_time(
                    "hit_limit",
                    store.hit_limit("k", 5, Duration::from_secs(60), NOW)
                ),
                unavailable_in_time(
                    "redeem_code",
                    store.redeem_code(
                        &rec.key,
                        CodePurpose::Login,
                        &email,
                        "mac",
                        NOW,
                        5,
                        Redeem::UseAttempt,
                    )
                ),
                unavailable_in_time("create_user", async {
                    store.create_user(&new).await.map_err(|e| match e {
                        CreateUserError::Store(e) => e,
                        other => StoreError::Internal(other.to_string()),
                    })
                }),
                unavailable_in_time("claim_due", store.claim_due(NOW, NOW + MIN, 10)),
                unavailable_in_time("ping", Health::ping(&store)),
            );

            let s = server.clone();
            tokio::task::spawn_blocking(move || s.restart())
                .await
                .unwrap();

            // The same store, without reopening: the pool replaces its dead connections.
            assert_eq!(
                store.load_session(&rec.key, NOW).await.unwrap(),
                Some(rec.clone()),
                "data survived and the store works again"
            );
            assert_eq!(store.claim_due(NOW, NOW + MIN, 10).await.unwrap().len(), 1);
            Health::ping(&store).await.unwrap();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_row_locked_elsewhere_gives_unavailable_not_a_hang() {
            use sqlx::{Connection, Executor};
            let url = $server::shared().fresh_database("locked").await;
            let store = open_on(&url).await;
            store.create_session(&session(5, None)).await.unwrap();
            store
                .issue_code(&$crate::suite::code(
                    5,
                    CodePurpose::Login,
                    "a@example.com",
                    "right",
                ))
                .await
                .unwrap();
            // Another client (a stuck instance, an operator's session) holds the code's row lock.
            let mut other = <$conn>::connect(&url).await.unwrap();
            other.execute("BEGIN").await.unwrap();
            other
                .execute("SELECT * FROM codes FOR UPDATE")
                .await
                .unwrap();
            let email = $crate::suite::email("a@example.com");
            unavailable_in_time(
                "check_code",
                store.check_code(
                    &$crate::suite::key(5),
                    CodePurpose::Login,
                    &email,
                    "wrong",
                    NOW,
                    5,
                ),
            )
            .await;
            other.execute("ROLLBACK").await.unwrap();
            // Nothing was counted while the row was locked; now it works again.
            assert_eq!(
                store
                    .check_code(
                        &$crate::suite::key(5),
                        CodePurpose::Login,
                        &email,
                        "wrong",
                        NOW,
                        5
                    )
                    .await
                    .unwrap(),
                CodeCheck::Wrong { attempts_left: 4 }
            );
        }

        #[tokio::test]
        async fn sweep_deletes_only_what_has_expired() {
            let store = open().await;
            let live = session(1, Some(7));
            let mut idle = session(2, Some(7));
            idle.idle_expires_at = NOW - 1;
            store.create_session(&live).await.unwrap();
            store.create_session(&idle).await.unwrap();
            let w = Duration::from_secs(60);
            store.hit_limit("old", 5, w, NOW - 2 * MIN).await.unwrap();
            store.hit_limit("new", 5, w, NOW).await.unwrap();
            let mut old = mail(1);
            old.created_at = NOW - 25 * 60 * MIN;
            store.enqueue(&old).await.unwrap();
            let sent = store.claim_due(NOW, NOW + MIN, 10).await.unwrap();
            store.mark_sent(&sent[..1], NOW).await.unwrap();

            store.sweep(NOW).await.unwrap();

            let mine = store.list_user_sessions(7, NOW - 10).await.unwrap();
            assert_eq!(
                mine.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
                vec![live.key.clone()]
            );
            assert_eq!(
                store.peek_limit("old", 0, NOW - 90_000).await.unwrap(),
                Limit::Allowed,
                "the expired window is gone"
            );
            assert!(matches!(
                store.peek_limit("new", 0, NOW).await.unwrap(),
                Limit::Limited { .. }
            ));
            assert_eq!(
                store
                    .delivery(&$crate::suite::code_for(&mail(1)))
                    .await
                    .unwrap(),
                None
            );
        }
    };
}
