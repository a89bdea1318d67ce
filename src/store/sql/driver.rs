//! The parts of a dialect that only differ by the sqlx driver they name, written once: the
//! executor methods of [`super::Dialect`], the hooks of a dialect served by one pool, how values
//! are bound and how rows are read.
use sqlx::pool::PoolOptions;
use std::time::Duration;

use super::Val;

/// A query as every dialect builds it.
pub type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds a [`Val`] as the types name it (text as text, a flag as a boolean); a dialect binds the
/// values it stores otherwise itself, and the rest with this.
pub fn bind_plain<'q, DB: sqlx::Database>(q: Query<'q, DB>, v: Val<'q>) -> Query<'q, DB>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match v {
        Val::Int(n) => q.bind(n),
        Val::Text(s) | Val::Key(s) | Val::Name(s) => q.bind(s),
        Val::OptInt(n) => q.bind(n),
        Val::OptText(s) => q.bind(s),
        Val::Flag(b) => q.bind(b),
    }
}

/// The executor methods of [`Dialect`] on a concrete sqlx driver, written once for every
/// dialect (each expands it with its own database type, its own way to bind a [`Val`] and its
/// own way to bind the list of a [`ListStmt`]: by default one value a placeholder).
#[macro_export]
#[doc(hidden)]
macro_rules! sql_executor {
    ($db:ty, $bind:path) => {
        $crate::sql_executor!($db, $bind, |q, list: &[$crate::store::sql::Val<'c>]| list
            .iter()
            .copied()
            .fold(q, $bind));
    };
    ($db:ty, $bind:path, $bind_list:expr) => {
        fn fetch_all<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::Stmt,
            args: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<
            Output = Result<Vec<<$db as sqlx::Database>::Row>, sqlx::Error>,
        > + Send
               + 'c {
            let q = stmt.args(args).fold(sqlx::query(stmt.sql), $bind);
            q.fetch_all(conn)
        }

        fn fetch_optional<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::Stmt,
            args: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<
            Output = Result<Option<<$db as sqlx::Database>::Row>, sqlx::Error>,
        > + Send
               + 'c {
            let q = stmt.args(args).fold(sqlx::query(stmt.sql), $bind);
            q.fetch_optional(conn)
        }

        fn execute<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::Stmt,
            args: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            let q = stmt.args(args).fold(sqlx::query(stmt.sql), $bind);
            async move { Ok(q.execute(conn).await?.rows_affected()) }
        }

        fn fetch_list<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::ListStmt,
            fixed: &'c [$crate::store::sql::Val<'c>],
            list: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<
            Output = Result<Vec<<$db as sqlx::Database>::Row>, sqlx::Error>,
        > + Send
               + 'c {
            async move {
                let sql = Self::list_sql(stmt, fixed.len(), list.len());
                let q = fixed.iter().copied().fold(sqlx::query(&sql), $bind);
                ($bind_list)(q, list).fetch_all(conn).await
            }
        }

        fn execute_list<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::ListStmt,
            fixed: &'c [$crate::store::sql::Val<'c>],
            list: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            async move {
                let sql = Self::list_sql(stmt, fixed.len(), list.len());
                let q = fixed.iter().copied().fold(sqlx::query(&sql), $bind);
                Ok(($bind_list)(q, list).execute(conn).await?.rows_affected())
            }
        }
    };
}

/// [`SqlRow`] for a driver whose rows decode every schema type as asked (`try_get`); `$extra`
/// overrides the methods that differ.
#[macro_export]
#[doc(hidden)]
macro_rules! sql_row_by_try_get {
    ($row:ty $(, $extra:item)*) => {
        impl $crate::store::sql::SqlRow for $row {
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            $($extra)*
        }
    };
}

/// Bytes read as UTF-8 text, the decode error naming the column.
pub fn utf8(col: &str, bytes: Vec<u8>) -> Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: Box::new(e),
    })
}

/// The driver types and connection hooks of a [`Dialect`] served by one sqlx pool (a server
/// shared by instances), opened by `$connect`: every operation bounded ([`run`]), reads and
/// writes on the same pool.
#[macro_export]
#[doc(hidden)]
macro_rules! server_pool {
    ($db:ty, $connect:path) => {
        type Db = $db;
        type Conn = <$db as sqlx::Database>::Connection;
        type Row = <$db as sqlx::Database>::Row;
        type Pools = sqlx::Pool<$db>;
        type Read<'a> = sqlx::pool::PoolConnection<$db>;
        const BOUNDED: bool = true;

        fn connect(
            url: &str,
            acquire_timeout: std::time::Duration,
        ) -> impl std::future::Future<Output = $crate::store::StoreResult<sqlx::Pool<$db>>> + Send {
            $connect(url, acquire_timeout)
        }

        fn write(
            p: &sqlx::Pool<$db>,
        ) -> impl std::future::Future<Output = Result<sqlx::pool::PoolConnection<$db>, sqlx::Error>>
               + Send
               + '_ {
            p.acquire()
        }

        fn begin(
            p: &sqlx::Pool<$db>,
        ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, $db>, sqlx::Error>>
               + Send
               + '_ {
            p.begin()
        }

        fn read(
            p: &sqlx::Pool<$db>,
        ) -> impl std::future::Future<Output = Result<sqlx::pool::PoolConnection<$db>, sqlx::Error>>
               + Send
               + '_ {
            p.acquire()
        }
    };
}

/// Connections per instance of a server's pool: PostgreSQL's default `max_connections` is 100
/// (MySQL's 151), so a few instances fit beside the operator's own clients
/// (docs/operations.md, "PostgreSQL").
const POOL_SIZE: u32 = 16;

/// The pool settings of a server shared by instances (MySQL/MariaDB, PostgreSQL).
pub fn server_pool<DB: sqlx::Database>(acquire_timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(0)
        // Covers TCP connect and handshake too: the pool retries a refused connection until
        // this deadline, then gives up with `PoolTimedOut`; a server that is down costs at most
        // this.
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .max_lifetime(Duration::from_secs(1800))
        // A connection that died with the server is found out before it is handed out.
        .test_before_acquire(true)
}
