//! Black-box tests of the HTTP API: the app on a random port, a client talking to it.
mod helpers;
#[path = "../support/mariadb_server.rs"]
mod mariadb_server;
#[path = "../support/postgres_server.rs"]
mod postgres_server;
#[path = "../support/redis_server.rs"]
mod redis_server;
#[path = "../support/smtp_peer.rs"]
mod smtp_peer;

mod backend;
mod cli;
mod codes;
mod cross_origin;
mod envelope;
mod events;
mod hostile_smtp;
mod input;
mod limits;
mod ops;
mod proxies;
mod restart;
mod sessions;
mod sign_in;
mod smtp;
mod webhooks;
