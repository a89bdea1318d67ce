//! Baseline for `bench/run`: the same three routes as mailcode, written the way the
//! axum + tower-sessions + tower-sessions-redis-store documentation suggests. Sessions in Redis
//! (one key per session, MessagePack), the cookie `mailcode_sid` with `HttpOnly; SameSite=Lax;
//! Path=/`, the code kept in the session as an HMAC, argon2id (19 MiB, 2 iterations, 1 lane) on
//! the blocking pool, mail handed to a pooled SMTP transport without waiting for it.
//!
//! Configuration by environment (set by bench/run):
//!   LISTEN=127.0.0.1:PORT  REDIS_URL=redis://127.0.0.1:PORT  SMTP_PORT=PORT
//!   BENCH_USERS=name:email:password[,…]  (hashed at start; users live in memory)
//!   ALWAYS_SAVE=1  (save the session on every request: idle expiry renewed by reads too)
use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::{fred::prelude::*, RedisStore};

const CODE_KEY: &str = "code";
const USER_KEY: &str = "user";
const CODE_TTL_SECS: i64 = 600;
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone, Serialize, Deserialize)]
struct PendingCode {
    email: String,
    mac: String,
    expires_at: i64,
    attempts: u32,
}

#[derive(Clone, Serialize, Deserialize)]
struct SignedIn {
    username: String,
    email: String,
    created_at: i64,
}

struct User {
    username: String,
    email: String,
    hash: String,
}

struct App {
    secret: [u8; 32],
    users: HashMap<String, User>,
    dummy_hash: String,
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    argon: Argon2<'static>,
}

type Shared = Arc<App>;

fn argon() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("argon2 params"),
    )
}

fn hash_password(a: &Argon2<'static>, pw: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    a.hash_password(pw.as_bytes(), &salt)
        .expect("argon2 hash")
        .to_string()
}

fn answer(status: StatusCode, code: &str, msg: &str, data: serde_json::Value) -> Response {
    let mut r = (
        status,
        Json(json!({ "code": code, "msg": msg, "data": data })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn valid_email(e: &str) -> bool {
    e.len() <= 254
        && e.matches('@').count() == 1
        && !e.starts_with('@')
        && !e.ends_with('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn code_mac(secret: &[u8; 32], email: &str, code: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("hmac key");
    m.update(email.as_bytes());
    m.update(b"\0");
    m.update(code.as_bytes());
    let out = m.finalize().into_bytes();
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn store_error() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "STORE_UNAVAILABLE",
        "session store unavailable",
        json!(null),
    )
}

#[derive(Deserialize)]
struct EmailBody {
    email: String,
}

async fn email_code(
    State(app): State<Shared>,
    session: Session,
    Json(b): Json<EmailBody>,
) -> Response {
    let email = b.email.trim().to_lowercase();
    if !valid_email(&email) {
        return answer(
            StatusCode::BAD_REQUEST,
            "INVALID_EMAIL",
            "invalid email",
            json!(null),
        );
    }
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let t = now();
    let pending = PendingCode {
        email: email.clone(),
        mac: code_mac(&app.secret, &email, &code),
        expires_at: t + CODE_TTL_SECS,
        attempts: 0,
    };
    if session.insert(CODE_KEY, pending).await.is_err() {
        return store_error();
    }
    // Queued, not awaited (mailcode also answers once the mail is queued).
    if let Ok(msg) = Message::builder()
        .from("bench <no-reply@localhost>".parse().expect("from"))
        .to(match email.parse() {
            Ok(m) => m,
            Err(_) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    "INVALID_EMAIL",
                    "invalid email",
                    json!(null),
                )
            }
        })
        .subject(format!("{code} is your sign-in code"))
        .body(format!("Your code is {code}. It expires in 10 minutes."))
    {
        let mailer = app.mailer.clone();
        tokio::spawn(async move {
            let _ = mailer.send(msg).await;
        });
    }
    answer(
        StatusCode::OK,
        "CODE_SENT",
        "code sent",
        json!({ "expires_at": rfc3339(t + CODE_TTL_SECS), "resend_available_at": rfc3339(t + 60), "delivery": "queued" }),
    )
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    email: String,
    code: String,
}

fn unauthorized(code: &str) -> Response {
    answer(StatusCode::UNAUTHORIZED, code, code, json!(null))
}

async fn get_token(
    State(app): State<Shared>,
    session: Session,
    Json(b): Json<LoginBody>,
) -> Response {
    let email = b.email.trim().to_lowercase();
    let Ok(pending) = session.get::<PendingCode>(CODE_KEY).await else {
        return store_error();
    };
    let Some(mut pending) = pending else {
        return unauthorized("NO_SESSION");
    };
    if pending.email != email {
        return unauthorized("CODE_INVALID");
    }
    if pending.expires_at < now() {
        return unauthorized("CODE_EXPIRED");
    }
    if pending.attempts >= MAX_ATTEMPTS {
        return unauthorized("CODE_ATTEMPTS_EXCEEDED");
    }
    let mac = code_mac(&app.secret, &email, &b.code);
    let right: bool = mac.as_bytes().ct_eq(pending.mac.as_bytes()).into();
    // The code is checked before the password; a wrong password uses an attempt too.
    let user = app.users.get(&b.username.to_lowercase());
    let password_ok = if right {
        let hash = user
            .map(|u| u.hash.clone())
            .unwrap_or_else(|| app.dummy_hash.clone());
        let pw = b.password.clone();
        let a = app.argon.clone();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| a.verify_password(pw.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && user.map(|u| u.email == email).unwrap_or(false)
    } else {
        false
    };
    if !right || !password_ok {
        pending.attempts += 1;
        if session.insert(CODE_KEY, pending).await.is_err() {
            return store_error();
        }
        return unauthorized(if right { "LOGIN_FAILED" } else { "CODE_INVALID" });
    }
    let user = user.expect("checked");
    // Fixation defence: a new id at sign-in.
    if session.cycle_id().await.is_err() {
        return store_error();
    }
    let _ = session.remove_value(CODE_KEY).await;
    let signed = SignedIn {
        username: user.username.clone(),
        email: user.email.clone(),
        created_at: now(),
    };
    if session.insert(USER_KEY, signed).await.is_err() {
        return store_error();
    }
    answer(
        StatusCode::OK,
        "LOGIN_SUCCESS",
        "signed in",
        json!({ "username": user.username, "email": user.email, "token": null }),
    )
}

async fn me(session: Session) -> Response {
    match session.get::<SignedIn>(USER_KEY).await {
        Err(_) => store_error(),
        Ok(None) => unauthorized("NOT_LOGGED_IN"),
        Ok(Some(u)) => answer(
            StatusCode::OK,
            "OK",
            "ok",
            json!({ "username": u.username, "email": u.email,
                    "session": { "created_at": rfc3339(u.created_at), "expires_at": rfc3339(session.expiry_date().unix_timestamp()) } }),
        ),
    }
}

#[tokio::main]
async fn main() {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let smtp_port: u16 = std::env::var("SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(25);

    let a = argon();
    // One argon2id hash per distinct password (the benchmark's users share one), so that start-up
    // does not take a hash per user; verifying costs the same either way.
    let mut hashes: HashMap<String, String> = HashMap::new();
    let mut users = HashMap::new();
    for spec in std::env::var("BENCH_USERS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let mut it = spec.splitn(3, ':');
        let (Some(name), Some(email), Some(pw)) = (it.next(), it.next(), it.next()) else {
            panic!("BENCH_USERS: name:email:password");
        };
        users.insert(
            name.to_lowercase(),
            User {
                username: name.into(),
                email: email.to_lowercase(),
                hash: hashes
                    .entry(pw.to_owned())
                    .or_insert_with(|| hash_password(&a, pw))
                    .clone(),
            },
        );
    }
    let dummy_hash = hash_password(&a, "not a password of anyone");

    let config = Config::from_url(&redis_url).expect("REDIS_URL");
    let pool = Pool::new(config, None, None, None, 4).expect("redis pool");
    let _conn = pool.connect();
    pool.wait_for_connect().await.expect("redis connect");

    // ALWAYS_SAVE=1: write the session back on every request, which is what renews the idle
    // expiry of `Expiry::OnInactivity` on reads (tower-sessions renews it only when the session
    // was modified otherwise). bench/run measures workload 1 both ways.
    let always_save = std::env::var("ALWAYS_SAVE").is_ok_and(|v| v == "1");
    let layer = SessionManagerLayer::new(RedisStore::new(pool))
        .with_always_save(always_save)
        .with_name("mailcode_sid")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(false)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));

    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp_port)
        .build();

    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill(&mut secret);
    let app = Arc::new(App {
        secret,
        users,
        dummy_hash,
        mailer,
        argon: a,
    });

    let router = Router::new()
        .route("/api/login/email-code", post(email_code))
        .route("/api/login/get-token", post(get_token))
        .route("/api/me", get(me))
        .layer(layer)
        .with_state(app);

    let listener = tokio::net::TcpListener::bind(&listen).await.expect("listen");
    eprintln!("axum-baseline listening on {listen}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("sigterm");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await
        .expect("serve");
}
