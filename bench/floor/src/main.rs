//! The floor of workload 1 (`bench/callgrind-me`, docs/benchmarks.md): `GET /api/me` as one
//! Redis `GET` of `floor:<cookie value>` and the stored JSON in a fixed envelope. The same
//! stack as mailcode (axum, a single-threaded Tokio runtime per CPU, redis-rs' multiplexed
//! connection manager, mimalloc) without anything a login service adds: no request id, origin
//! check, timeouts, metrics, session decoding, expiry or renewal. What no server on this stack can
//! go below, to compare mailcode with.
//!
//! Environment: LISTEN (default 127.0.0.1:3200), REDIS_URL (default redis://127.0.0.1:6379).
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use redis::aio::ConnectionManager;

#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;

/// mailcode's own allocator, so that the floor allocates as mailcode does.
#[path = "../../../src/alloc.rs"]
mod alloc;

async fn me(State(mut redis): State<ConnectionManager>, headers: HeaderMap) -> impl IntoResponse {
    let sid = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("mailcode_sid="))
        })
        .unwrap_or("");
    let found: Option<String> = redis::cmd("GET")
        .arg(format!("floor:{sid}"))
        .query_async(&mut redis)
        .await
        .unwrap_or(None);
    let json = [(header::CONTENT_TYPE, "application/json")];
    match found {
        Some(data) => (
            StatusCode::OK,
            json,
            format!(r#"{{"code":"OK","msg":"ok","data":{data}}}"#),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            json,
            r#"{"code":"NOT_LOGGED_IN","msg":"not signed in","data":null}"#.to_string(),
        ),
    }
}

/// One thread per CPU, each with its own single-threaded runtime, listening socket on the one
/// address (`SO_REUSEPORT`) and Redis connection: how mailcode serves (src/app.rs).
fn main() {
    let listen: std::net::SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3200".into())
        .parse()
        .expect("LISTEN");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
                    socket.set_reuseport(true).expect("SO_REUSEPORT");
                    socket.bind(listen).expect("LISTEN");
                    let listener = socket.listen(1024).expect("listen");
                    let client = redis::Client::open(url).expect("REDIS_URL");
                    let redis = ConnectionManager::new(client).await.expect("Redis");
                    let app = Router::new().route("/api/me", get(me)).with_state(redis);
                    axum::serve(listener, app).await.expect("serve");
                })
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
