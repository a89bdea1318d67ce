//! One test suite that every store backend must pass (STYLE §4): the same behaviour, checked
//! against SQLite, Redis, MariaDB and PostgreSQL, each a real server started by the harness.
mod suite;
#[macro_use]
mod networked;

mod mysql;
mod postgres;
mod redis;
mod redis_cluster;
mod redis_format;
mod redis_sentinel;
mod sqlite;
