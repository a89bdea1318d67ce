//! PostgreSQL (a real server started by `support/postgres_server.rs`), each test in its own
//! database on one shared server.
#[path = "../support/postgres_server.rs"]
mod postgres_server;

use postgres_server::Postgres;

/// The schema of `migrations/postgres` applies to an empty database, and applying it again finds
/// nothing to do; its tables are the ones the other dialects have.
#[tokio::test]
async fn the_migrations_apply_once() {
    let url = Postgres::shared().fresh_database("migrate").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    for _ in 0..2 {
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .expect("the migrations apply");
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("lists tables");
    assert_eq!(
        tables,
        ["codes", "deployment", "limits", "mail_queue", "sessions", "users"]
    );
    pool.close().await;
}
