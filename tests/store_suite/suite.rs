//! The behaviour every backend shares. Each function takes a fresh, empty store; the macros at
//! the bottom turn them into `#[tokio::test]`s for a backend module.
#![allow(dead_code)]
use mailcode::clock::Millis;
use mailcode::domain::{
    CodePurpose, Email, SessionKey, SessionKind, SessionRecord, SessionUser, Username,
};
use mailcode::store::*;
use std::sync::Arc;
use std::time::Duration;

/// What the session-side suite needs of a backend: every concern but users and the outbox.
pub trait Backend: SessionStore + CodeStore + LimitStore + Health {}
impl<T: SessionStore + CodeStore + LimitStore + Health + ?Sized> Backend for T {}

/// What the user-side suite needs of a backend.
pub trait Users: UserStore + Health {}
impl<T: UserStore + Health + ?Sized> Users for T {}

/// A code request's writes in steps, as the flow makes them where no backend offers one step.
pub struct Steps {
    pub backend: Arc<dyn Backend>,
    pub outbox: Arc<dyn Outbox>,
}

#[async_trait::async_trait]
impl CodeRequestWrites for Steps {
    async fn issue_code_and_mail(
        &self,
        limits: &[LimitCheck],
        now: Millis,
        new_session: Option<&SessionRecord>,
        code: &CodeRecord,
        mail: &OutgoingMail,
    ) -> StoreResult<Limit> {
        let b = &*self.backend;
        in_steps(b, b, b, &*self.outbox, limits, now, new_session, code, mail).await
    }
}

pub const NOW: Millis = 1_800_000_000_000;
const MIN: Millis = 60_000;

pub fn key(n: u32) -> SessionKey {
    SessionKey::parse(&format!("{n:064x}")).expect("64 hex digits")
}

/// A user id (SPEC §6) made from a row id, so that tests can tell which account it names.
pub fn user_id_for(id: i64) -> mailcode::domain::UserId {
    mailcode::domain::UserId::parse(&format!("01900000-0000-7000-8000-{id:012x}")).expect("uuid")
}

pub fn session(n: u32, user: Option<i64>) -> SessionRecord {
    SessionRecord {
        key: key(n),
        kind: SessionKind::Cookie,
        user: user.map(|id| SessionUser {
            id,
            username: format!("user{id}"),
            email: format!("user{id}@example.com"),
            public_id: Some(user_id_for(id)),
        }),
        created_at: NOW,
        last_seen_at: NOW,
        idle_expires_at: NOW + 30 * MIN,
        absolute_expires_at: NOW + 7 * 24 * 60 * MIN,
        user_agent: "test/1.0".into(),
        ip: "127.0.0.1".into(),
    }
}

pub fn email(s: &str) -> Email {
    Email::parse(s).expect("valid email")
}

pub fn code(n: u32, purpose: CodePurpose, to: &str, mac: &str) -> CodeRecord {
    CodeRecord {
        session: key(n),
        purpose,
        email: to.into(),
        mac: mac.into(),
        created_at: NOW,
        expires_at: NOW + 10 * MIN,
        resend_available_at: NOW + MIN,
        attempts: 0,
        mail_ref: format!("ref{n}"),
    }
}

pub async fn session_roundtrip(s: Arc<dyn Backend>) {
    let rec = session(1, Some(7));
    s.create_session(&rec).await.unwrap();
    assert_eq!(
        s.load_session(&rec.key, NOW).await.unwrap(),
        Some(rec.clone())
    );
    s.touch_session(&rec.key, NOW + 5 * MIN, NOW + 35 * MIN)
        .await
        .unwrap();
    let loaded = s
        .load_session(&rec.key, NOW + 5 * MIN)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(loaded.last_seen_at, NOW + 5 * MIN);
    assert_eq!(loaded.idle_expires_at, NOW + 35 * MIN);
    // Past the idle timeout: gone.
    assert_eq!(
        s.load_session(&rec.key, NOW + 36 * MIN).await.unwrap(),
        None
    );
    s.delete_session(&rec.key, &[]).await.unwrap();
    assert_eq!(s.load_session(&rec.key, NOW).await.unwrap(), None);
    assert!(!s.delete_session(&key(999), &[]).await.unwrap());
}

pub async fn touch_never_recreates(s: Arc<dyn Backend>) {
    let rec = session(2, Some(7));
    s.create_session(&rec).await.unwrap();
    assert!(s.delete_session(&rec.key, &[]).await.unwrap());
    s.touch_session(&rec.key, NOW + MIN, NOW + 31 * MIN)
        .await
        .unwrap();
    assert_eq!(s.load_session(&rec.key, NOW + MIN).await.unwrap(), None);
}

pub async fn user_sessions_list_and_revoke(s: Arc<dyn Backend>) {
    for n in 10..13 {
        s.create_session(&session(n, Some(42))).await.unwrap();
    }
    s.create_session(&session(20, Some(43))).await.unwrap();
    s.create_session(&session(21, None)).await.unwrap();
    let mine = s.list_user_sessions(42, NOW).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert_eq!(
        s.revoke_user_sessions(42, Some(&key(11)), &[])
            .await
            .unwrap(),
        2
    );
    let mine = s.list_user_sessions(42, NOW).await.unwrap();
    assert_eq!(
        mine.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        vec![key(11)]
    );
    assert_eq!(s.revoke_user_sessions(42, None, &[]).await.unwrap(), 1);
    assert!(s.load_session(&key(11), NOW).await.unwrap().is_none());
    assert!(
        s.load_session(&key(20), NOW).await.unwrap().is_some(),
        "another user's session stays"
    );
}

pub async fn codes_count_attempts_and_die(s: Arc<dyn Backend>) {
    s.create_session(&session(30, None)).await.unwrap();
    s.issue_code(&code(30, CodePurpose::Login, "a@example.com", "right"))
        .await
        .unwrap();
    let e = email("a@example.com");
    let check = |mac: &'static str| {
        let s = s.clone();
        let e = e.clone();
        async move {
            s.check_code(&key(30), CodePurpose::Login, &e, mac, NOW + 1, 5)
                .await
                .unwrap()
        }
    };
    assert_eq!(check("right").await, CodeCheck::Right);
    assert_eq!(
        check("right").await,
        CodeCheck::Right,
        "checking does not consume"
    );
    for left in (0..5).rev() {
        assert_eq!(
            check("wrong").await,
            CodeCheck::Wrong {
                attempts_left: left
            }
        );
    }
    assert_eq!(check("right").await, CodeCheck::Dead);
}

/// A new visitor's session and its first code, as the flow writes them in steps.
pub async fn start_with_code(
    s: &dyn Backend,
    new: &SessionRecord,
    c: &CodeRecord,
) -> StoreResult<()> {
    s.create_session(new).await?;
    s.issue_code(c).await
}

/// A new visitor's session and first code: both are there, and a second code for the session
/// replaces the first as usual.
pub async fn a_session_starts_with_its_code(s: Arc<dyn Backend>) {
    start_with_code(
        &*s,
        &session(41, None),
        &code(41, CodePurpose::Login, "a@example.com", "first"),
    )
    .await
    .unwrap();
    let got = s
        .load_session(&key(41), NOW + 1)
        .await
        .unwrap()
        .expect("the session");
    assert_eq!(got.key, key(41));
    assert!(got.user.is_none());
    let a = email("a@example.com");
    assert_eq!(
        s.check_code(&key(41), CodePurpose::Login, &a, "first", NOW + 1, 5)
            .await
            .unwrap(),
        CodeCheck::Right
    );
    s.issue_code(&code(41, CodePurpose::Login, "a@example.com", "second"))
        .await
        .unwrap();
    assert_eq!(
        s.check_code(&key(41), CodePurpose::Login, &a, "first", NOW + 1, 5)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 4 }
    );
    assert!(s.delete_session(&key(41), &[]).await.unwrap());
    assert_eq!(
        s.check_code(&key(41), CodePurpose::Login, &a, "second", NOW + 1, 5)
            .await
            .unwrap(),
        CodeCheck::Missing,
        "the code ends with its session"
    );
}

pub async fn codes_are_bound_to_session_email_and_purpose(s: Arc<dyn Backend>) {
    s.create_session(&session(31, None)).await.unwrap();
    s.issue_code(&code(31, CodePurpose::Login, "a@example.com", "right"))
        .await
        .unwrap();
    let a = email("a@example.com");
    let b = email("b@example.com");
    assert_eq!(
        s.check_code(&key(31), CodePurpose::Login, &b, "right", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Missing
    );
    assert_eq!(
        s.check_code(&key(31), CodePurpose::Register, &a, "right", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Missing
    );
    assert_eq!(
        s.check_code(&key(32), CodePurpose::Login, &a, "right", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Missing
    );
    assert_eq!(
        s.check_code(&key(31), CodePurpose::Login, &a, "right", NOW + 10 * MIN, 5)
            .await
            .unwrap(),
        CodeCheck::Expired
    );
    // A new code replaces the previous one for the session and purpose.
    s.issue_code(&code(31, CodePurpose::Login, "a@example.com", "newer"))
        .await
        .unwrap();
    assert_eq!(
        s.check_code(&key(31), CodePurpose::Login, &a, "right", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        s.check_code(&key(31), CodePurpose::Login, &a, "newer", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Right
    );
    let current = s
        .current_code(&key(31), NOW)
        .await
        .unwrap()
        .expect("a current code");
    assert_eq!(
        (current.purpose, current.mail_ref.as_str()),
        (CodePurpose::Login, "ref31")
    );
    assert!(s
        .current_code(&key(31), NOW + 11 * MIN)
        .await
        .unwrap()
        .is_none());
}

pub async fn redeem_is_atomic_under_a_race(s: Arc<dyn Backend>) {
    s.create_session(&session(40, None)).await.unwrap();
    s.issue_code(&code(40, CodePurpose::Login, "a@example.com", "right"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.redeem_code(
                    &key(40),
                    CodePurpose::Login,
                    &email("a@example.com"),
                    "right",
                    NOW + 1,
                    5,
                    Redeem::SignIn {
                        new: session(100 + i, Some(9)),
                        events: Vec::new(),
                    },
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap() == Redeemed::SignedIn {
            wins.push(i as u32);
        }
    }
    assert_eq!(wins.len(), 1, "exactly one racer signs in");
    assert!(
        s.load_session(&key(40), NOW + 1).await.unwrap().is_none(),
        "the pre-login session ended"
    );
    assert!(
        s.load_session(&key(100 + wins[0]), NOW + 1)
            .await
            .unwrap()
            .is_some(),
        "the new session exists"
    );
    let live = s.list_user_sessions(9, NOW + 1).await.unwrap();
    assert_eq!(live.len(), 1, "losers created nothing");
}

pub async fn redeem_can_spend_an_attempt(s: Arc<dyn Backend>) {
    s.create_session(&session(41, None)).await.unwrap();
    s.issue_code(&code(41, CodePurpose::Reset, "a@example.com", "right"))
        .await
        .unwrap();
    let e = email("a@example.com");
    let r = s
        .redeem_code(
            &key(41),
            CodePurpose::Reset,
            &e,
            "right",
            NOW,
            5,
            Redeem::UseAttempt,
        )
        .await
        .unwrap();
    assert_eq!(r, Redeemed::AttemptUsed { attempts_left: 4 });
    let r = s
        .redeem_code(
            &key(41),
            CodePurpose::Reset,
            &e,
            "wrong",
            NOW,
            5,
            Redeem::UseAttempt,
        )
        .await
        .unwrap();
    assert_eq!(r, Redeemed::Gone);
    assert_eq!(
        s.check_code(&key(41), CodePurpose::Reset, &e, "nope", NOW, 5)
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 3 }
    );
}

pub async fn limits_count_in_fixed_windows(s: Arc<dyn Backend>) {
    let w = Duration::from_secs(3600);
    assert_eq!(s.peek_limit("k", 2, NOW).await.unwrap(), Limit::Allowed);
    assert_eq!(s.hit_limit("k", 2, w, NOW).await.unwrap(), Limit::Allowed);
    assert_eq!(
        s.hit_limit("k", 2, w, NOW + 1000).await.unwrap(),
        Limit::Allowed
    );
    assert_eq!(
        s.peek_limit("k", 2, NOW + 1000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 3_599_000
        }
    );
    assert_eq!(
        s.hit_limit("k", 2, w, NOW + 2000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 3_598_000
        }
    );
    assert_eq!(
        s.hit_limit("other", 2, w, NOW + 2000).await.unwrap(),
        Limit::Allowed
    );
    // A new window.
    assert_eq!(
        s.hit_limit("k", 2, w, NOW + 3_600_000).await.unwrap(),
        Limit::Allowed
    );
    assert_eq!(
        s.peek_limit("k", 2, NOW + 3_600_000).await.unwrap(),
        Limit::Allowed
    );
}

/// `hit_limits` is `hit_limit` / `peek_limit` for each check in order, stopping at the first
/// refusal: the refused hit counts, the checks after it are neither counted nor read.
pub async fn limits_in_one_call_stop_at_the_first_refusal(s: Arc<dyn Backend>) {
    let w = Duration::from_secs(3600);
    let hour: Millis = 3_600_000;
    let checks = [
        LimitCheck::hit("a", 3, w),
        LimitCheck::peek("p", 1),
        LimitCheck::hit("b", 1, Duration::from_secs(60)),
        LimitCheck::hit("c", 5, w),
    ];
    // A counter holds exactly `hits` hits: a peek at ceiling `hits` refuses, one at `hits + 1`
    // allows (peeks count nothing).
    let holds = |key: &'static str, hits: u32, at: Millis| {
        let s = s.clone();
        async move {
            if hits > 0 {
                assert!(
                    matches!(
                        s.peek_limit(key, hits, at).await.unwrap(),
                        Limit::Limited { .. }
                    ),
                    "{key} holds at least {hits} hits at +{}",
                    at - NOW
                );
            }
            assert_eq!(
                s.peek_limit(key, hits + 1, at).await.unwrap(),
                Limit::Allowed,
                "{key} holds at most {hits} hits at +{}",
                at - NOW
            );
        }
    };

    // Nothing refuses: every counting check counts, the peek writes nothing.
    assert_eq!(s.hit_limits(&checks, NOW).await.unwrap(), Limit::Allowed);
    holds("a", 1, NOW).await;
    holds("p", 0, NOW).await;
    holds("b", 1, NOW).await;
    holds("c", 1, NOW).await;
    assert_eq!(s.peek_limit("p", 0, NOW).await.unwrap(), Limit::Allowed);

    // The third refuses (its 60 s window): its hit counts, the fourth is not counted.
    let t = NOW + 1000;
    assert_eq!(
        s.hit_limits(&checks, t).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 59_000
        }
    );
    holds("a", 2, t).await;
    holds("b", 2, t).await;
    holds("c", 1, t).await;

    // A peek refuses: the checks after it are not counted (b's window is over, so a counted hit
    // would have opened a new one).
    s.hit_limit("p", 1, w, NOW + 2000).await.unwrap();
    let t = NOW + 61_000;
    assert_eq!(
        s.hit_limits(&checks, t).await.unwrap(),
        Limit::Limited {
            retry_after_ms: NOW + 2000 + hour - t
        }
    );
    holds("a", 3, t).await;
    assert_eq!(s.peek_limit("b", 0, t).await.unwrap(), Limit::Allowed);
    holds("c", 1, t).await;

    // The first refuses: nothing after it happens.
    let t = NOW + 62_000;
    assert_eq!(
        s.hit_limits(&checks, t).await.unwrap(),
        Limit::Limited {
            retry_after_ms: NOW + hour - t
        }
    );
    holds("a", 4, t).await;
    assert_eq!(s.peek_limit("b", 0, t).await.unwrap(), Limit::Allowed);
    holds("c", 1, t).await;

    // A new window for all: allowed again, counted from 1.
    let t = NOW + hour + 2000;
    assert_eq!(s.hit_limits(&checks, t).await.unwrap(), Limit::Allowed);
    holds("a", 1, t).await;
    holds("b", 1, t).await;
    holds("c", 1, t).await;
    assert_eq!(s.hit_limits(&[], t).await.unwrap(), Limit::Allowed);
}

/// A spacing (`LimitCheck::spaced`: the resend cooldown of a purpose on an address's hourly
/// count) refuses a counted hit of its name within its gap, with the gap's end, counting
/// nothing; another name has its own gap; the ceiling still counts and refuses; a gap outlives
/// a shorter window; `hit_limit` and `peek_limit` on the same counter leave the gaps alone.
pub async fn spacings_refuse_hits_within_their_gap(s: Arc<dyn Backend>) {
    let hour = Duration::from_secs(3600);
    let gap = Duration::from_secs(60);
    let login = || LimitCheck::hit("e", 3, hour).spaced("login", gap);
    let register = || LimitCheck::hit("e", 3, hour).spaced("register", gap);
    // `e` holds exactly `hits` hits at `at` (peeks count nothing).
    let holds = |hits: u32, at: Millis| {
        let s = s.clone();
        async move {
            assert!(matches!(
                s.peek_limit("e", hits, at).await.unwrap(),
                Limit::Limited { .. }
            ));
            assert_eq!(
                s.peek_limit("e", hits + 1, at).await.unwrap(),
                Limit::Allowed
            );
        }
    };

    assert_eq!(s.hit_limits(&[login()], NOW).await.unwrap(), Limit::Allowed);
    holds(1, NOW).await;
    assert_eq!(
        s.hit_limits(&[login()], NOW + 10_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 50_000
        },
        "within the gap: refused until it ends"
    );
    holds(1, NOW + 10_000).await;
    assert_eq!(
        s.hit_limits(&[register()], NOW + 20_000).await.unwrap(),
        Limit::Allowed,
        "another name has its own gap"
    );
    holds(2, NOW + 20_000).await;
    assert_eq!(
        s.hit_limits(&[login()], NOW + 60_000).await.unwrap(),
        Limit::Allowed,
        "the gap is over"
    );
    holds(3, NOW + 60_000).await;
    assert_eq!(
        s.hit_limits(&[register()], NOW + 80_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 3_600_000 - 80_000
        },
        "past its gap, the ceiling refuses, until the window ends"
    );

    // A gap longer than the window outlives it.
    let short = || LimitCheck::hit("g", 5, Duration::from_secs(10)).spaced("login", gap);
    assert_eq!(s.hit_limits(&[short()], NOW).await.unwrap(), Limit::Allowed);
    assert_eq!(
        s.hit_limits(&[short()], NOW + 20_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 40_000
        }
    );

    // In a list: a spacing's refusal stops the checks after it, the ones before it count; a
    // plain `hit_limit` on the same counter counts and keeps the gap.
    let checks = [
        LimitCheck::hit("a", 30, hour),
        LimitCheck::hit("h", 5, hour).spaced("login", gap),
        LimitCheck::hit("z", 5, hour),
    ];
    assert_eq!(s.hit_limits(&checks, NOW).await.unwrap(), Limit::Allowed);
    assert_eq!(
        s.hit_limits(&checks, NOW + 1_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 59_000
        }
    );
    for (key, hits) in [("a", 2), ("h", 1), ("z", 1)] {
        assert_eq!(
            s.peek_limit(key, hits + 1, NOW + 1_000).await.unwrap(),
            Limit::Allowed,
            "{key} holds at most {hits}"
        );
        assert!(matches!(
            s.peek_limit(key, hits, NOW + 1_000).await.unwrap(),
            Limit::Limited { .. }
        ));
    }
    assert_eq!(
        s.hit_limit("h", 5, hour, NOW + 2_000).await.unwrap(),
        Limit::Allowed
    );
    assert_eq!(
        s.hit_limits(&checks[1..2], NOW + 3_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 57_000
        }
    );
    assert!(matches!(
        s.peek_limit("h", 2, NOW + 3_000).await.unwrap(),
        Limit::Limited { .. }
    ));
}

pub async fn limits_hold_under_concurrency(s: Arc<dyn Backend>) {
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.hit_limit("race", 10, Duration::from_secs(60), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap() == Limit::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

pub fn new_user(name: &str, mail: &str) -> NewUser {
    with_key(
        name,
        &mailcode::domain::username::key_of(name).expect("short"),
        mail,
    )
}

pub fn with_key(name: &str, key: &str, mail: &str) -> NewUser {
    NewUser {
        public_id: mailcode::domain::UserId::new(NOW),
        username: name.into(),
        username_key: key.into(),
        email: mail.into(),
        password_hash: "$argon2id$fake".into(),
        created_at: NOW,
    }
}

pub async fn users_are_unique_by_name_and_email(u: Arc<dyn Users>) {
    let id = u
        .create_user(&new_user("Alice", "alice@example.com"))
        .await
        .unwrap();
    assert!(matches!(
        u.create_user(&new_user("ALICE", "other@example.com")).await,
        Err(CreateUserError::UsernameTaken)
    ));
    assert!(matches!(
        u.create_user(&new_user("bob", "alice@example.com")).await,
        Err(CreateUserError::EmailTaken)
    ));
    let found = u
        .find_by_username(&keys("alice"))
        .await
        .unwrap()
        .expect("by name");
    assert_eq!((found.id, found.username.as_str()), (id, "Alice"));
    assert_eq!(
        u.find_by_email(&email("alice@example.com"))
            .await
            .unwrap()
            .map(|x| x.id),
        Some(id)
    );
    assert!(u.find_by_username(&keys("nobody")).await.unwrap().is_none());
    u.set_password(id, "$argon2id$other").await.unwrap();
    u.set_disabled(id, true).await.unwrap();
    let found = u.find_by_username(&keys("ALICE")).await.unwrap().unwrap();
    assert_eq!(
        (found.password_hash.as_str(), found.disabled),
        ("$argon2id$other", true)
    );
    let bob = u
        .create_user(&new_user("bob", "bob@example.com"))
        .await
        .unwrap();
    assert_eq!(u.list_users().await.unwrap().len(), 2);
    u.delete_user(bob).await.unwrap();
    assert_eq!(u.list_users().await.unwrap().len(), 1);
    Health::ping(&*u).await.unwrap();
}

/// The keys a sign-in by `name` looks up.
pub fn keys(name: &str) -> [String; 2] {
    Username::parse_for_login(name)
        .expect("the shape of a name")
        .lookup_keys()
}

/// Keys are compared as bytes, exactly: no collation of the store's own folds case or accents,
/// or ignores trailing spaces (MySQL's utf8mb4_bin pads); a name's exact key, kept after a
/// collision (`store::rekey`), wins over the key it collided on.
pub async fn username_keys_are_exact_and_exact_names_come_first(u: Arc<dyn Users>) {
    let alice = u
        .create_user(&new_user("alice", "alice@example.com"))
        .await
        .unwrap();
    assert!(matches!(
        u.create_user(&new_user("ａｌｉｃｅ", "fw@example.com"))
            .await,
        Err(CreateUserError::UsernameTaken)
    ));
    for other in ["alice ", "Alice", "alicé", "alice\u{0}"] {
        let id = u
            .create_user(&with_key(
                other,
                other,
                &format!("{}@example.com", other.len()),
            ))
            .await
            .map_err(|e| format!("{other:?}: {e}"))
            .unwrap();
        let found = u.find_by_username(&[other.into()]).await.unwrap();
        assert_eq!(found.map(|f| f.id), Some(id), "{other:?}");
        u.delete_user(id).await.unwrap();
    }
    // An account that kept only its exact name.
    let fw = u
        .create_user(&with_key("ａｌｉｃｅ", "=ａｌｉｃｅ", "fw@example.com"))
        .await
        .unwrap();
    let by = |name: &'static str| {
        let u = u.clone();
        async move { u.find_by_username(&keys(name)).await.unwrap().map(|f| f.id) }
    };
    assert_eq!(by("ａｌｉｃｅ").await, Some(fw));
    assert_eq!(by("ＡＬＩＣＥ").await, Some(alice));
    assert_eq!(by("alice").await, Some(alice));
    assert!(u.find_by_username(&[]).await.unwrap().is_none());
    // The longest key a name can have fits.
    let long = "ﬃ".repeat(32);
    let id = u
        .create_user(&new_user(&long, "long@example.com"))
        .await
        .unwrap();
    assert_eq!(
        u.find_by_username(&keys(&long))
            .await
            .unwrap()
            .map(|f| f.id),
        Some(id)
    );
    let longest = "a".repeat(Username::MAX_KEY_BYTES);
    u.create_user(&with_key("longest", &longest, "longest@example.com"))
        .await
        .unwrap();
    assert!(u.find_by_username(&[longest]).await.unwrap().is_some());
}

/// Accounts as a store of the first key version held them (`username_key_version` 1, keys
/// lower-cased letter by letter), in id order: name, key, email. Some of them are one name in
/// NFKC_Casefold; backends insert them by hand, open again, then check
/// [`stale_keys_were_recomputed`].
pub const STALE_ACCOUNTS: [(&str, &str, &str); 7] = [
    ("Alice", "alice", "alice@example.com"),
    ("ａｌｉｃｅ", "ａｌｉｃｅ", "fullwidth@example.com"),
    ("Straße", "straße", "strasse@example.com"),
    // Made when mixing scripts was allowed.
    ("аlice", "аlice", "cyrillic@example.com"),
    // Its new key is the old key of the next one: keys move through placeholders.
    ("ǅemal", "ǆemal", "dz1@example.com"),
    ("Džemal", "džemal", "dz2@example.com"),
    ("bob", "bob", "bob@example.com"),
];

pub async fn stale_keys_were_recomputed(u: Arc<dyn Users>) {
    let users = u.list_users().await.unwrap();
    assert_eq!(users.len(), STALE_ACCOUNTS.len(), "no account is lost");
    let id = |name: &str| {
        users
            .iter()
            .find(|x| x.username == name)
            .map(|x| x.id)
            .unwrap_or_else(|| panic!("{name} is kept"))
    };
    for (typed, owner) in [
        ("ALICE", "Alice"),
        ("ＡＬＩＣＥ", "Alice"),
        // Only its exact name finds the later account.
        ("ａｌｉｃｅ", "ａｌｉｃｅ"),
        ("STRASSE", "Straße"),
        ("strasse", "Straße"),
        ("аlice", "аlice"),
        ("АLICE", "аlice"),
        ("DŽEMAL", "ǅemal"),
        ("Džemal", "Džemal"),
        ("BOB", "bob"),
    ] {
        let found = u.find_by_username(&keys(typed)).await.unwrap();
        assert_eq!(
            found.map(|f| f.id),
            Some(id(owner)),
            "{typed:?} signs in as {owner:?}"
        );
    }
    for taken in ["ＡＬＩＣＥ", "STRASSE", "DŽEMAL"] {
        assert!(
            matches!(
                u.create_user(&new_user(taken, "new@example.com")).await,
                Err(CreateUserError::UsernameTaken)
            ),
            "{taken:?} is taken"
        );
    }
}

/// Many lookups by address at once (the SQLite store answers them in groups): each gets the
/// account of its own address, or none.
pub async fn concurrent_lookups_each_get_their_own_answer(u: Arc<dyn Users>) {
    let mut ids = Vec::new();
    for n in 0..10 {
        let id = u
            .create_user(&new_user(&format!("user{n}"), &format!("u{n}@example.com")))
            .await
            .unwrap();
        ids.push(id);
    }
    let lookups: Vec<_> = (0..200)
        .map(|i| {
            let u = u.clone();
            // Every other one has no account; addresses repeat within a group too.
            let n = i % 20;
            tokio::spawn(async move {
                let found = u.find_by_email(&email(&format!("u{n}@example.com"))).await;
                (n, found.unwrap().map(|x| (x.id, x.email)))
            })
        })
        .collect();
    for l in lookups {
        let (n, found) = l.await.unwrap();
        let expected = (n < 10).then(|| (ids[n], format!("u{n}@example.com")));
        assert_eq!(found, expected, "u{n}@example.com");
    }
}

fn mail(r: &str, expires_at: Millis) -> OutgoingMail {
    OutgoingMail {
        mail_ref: r.into(),
        code: Some(code_for_key()),
        to: "a@example.com".into(),
        order: "sealed order".into(),
        expires_at,
        created_at: NOW,
    }
}

/// The code `code_for` makes, as a mail names it.
pub fn code_for_key() -> CodeKey {
    CodeKey {
        session: key(99),
        purpose: CodePurpose::Login,
    }
}

/// A code naming the mail `m` (of a session that need not exist), for a queue to enqueue it with.
pub fn code_for(m: &OutgoingMail) -> CodeRecord {
    CodeRecord {
        mail_ref: m.mail_ref.clone(),
        expires_at: m.expires_at,
        ..code(99, CodePurpose::Login, &m.to, "mac")
    }
}

/// The mail that carries `c`, as a code request queues it.
pub fn mail_of(c: &CodeRecord) -> OutgoingMail {
    OutgoingMail {
        code: Some(c.key()),
        ..mail(&c.mail_ref, c.expires_at)
    }
}

/// `sessions` and `q` are one backend (the queue may keep a mail's state with its code).
pub async fn the_mail_queue_leases_retries_and_reports(
    sessions: Arc<dyn Backend>,
    q: Arc<dyn Outbox>,
) {
    let issue = |n: u32, mail_ref: &str| {
        let sessions = sessions.clone();
        let q = q.clone();
        let c = CodeRecord {
            mail_ref: mail_ref.into(),
            ..code(n, CodePurpose::Login, "a@example.com", "mac")
        };
        async move {
            if sessions
                .load_session(&c.session, NOW)
                .await
                .unwrap()
                .is_none()
            {
                start_with_code(&*sessions, &session(n, None), &c)
                    .await
                    .unwrap();
            } else {
                sessions.issue_code(&c).await.unwrap();
            }
            q.enqueue(&mail_of(&c)).await.unwrap();
            c
        }
    };
    let c1 = issue(61, "m1").await;
    assert_eq!(q.delivery(&c1).await.unwrap(), Some(Delivery::Queued));
    let never = CodeRecord {
        mail_ref: "nope".into(),
        ..code(69, CodePurpose::Login, "a@example.com", "mac")
    };
    assert_eq!(q.delivery(&never).await.unwrap(), None);
    assert_eq!(q.next_due().await.unwrap(), Some(NOW));
    let got = q.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail.mail_ref, "m1");
    assert_eq!(got[0].mail.order, "sealed order");
    assert_eq!(got[0].mail.to, "a@example.com");
    assert_eq!(got[0].mail.expires_at, c1.expires_at);
    assert!(
        q.claim_due(NOW + 1, NOW + MIN, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased to the first worker"
    );
    q.mark_retry(&got[0], NOW + 2000, "connection refused")
        .await
        .unwrap();
    assert_eq!(
        q.delivery(&c1).await.unwrap(),
        Some(Delivery::Failed),
        "a failed attempt shows while the retry waits"
    );
    assert!(
        q.claim_due(NOW + 1000, NOW + MIN, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    assert_eq!(q.next_due().await.unwrap(), Some(NOW + 2000));
    let again = q.claim_due(NOW + 2000, NOW + MIN, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    assert_eq!(again[0].mail.order, "sealed order");
    q.mark_sent(&again, NOW + 2001).await.unwrap();
    assert_eq!(q.delivery(&c1).await.unwrap(), Some(Delivery::Sent));
    let current = sessions
        .current_code(&c1.session, NOW + 2001)
        .await
        .unwrap()
        .expect("the session's code");
    assert_eq!(q.delivery(&current).await.unwrap(), Some(Delivery::Sent));
    assert!(q
        .claim_due(NOW + 10 * MIN, NOW + 11 * MIN, 10)
        .await
        .unwrap()
        .is_empty());
    let c2 = issue(62, "m2").await;
    let got = q.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    q.mark_failed(&got[0], "expired").await.unwrap();
    assert_eq!(q.delivery(&c2).await.unwrap(), Some(Delivery::Failed));
    // A code sent again: the older mail's fate is not the newer one's.
    let older = issue(63, "m3").await;
    // Read by the status route just before the code is sent again: still the older mail's.
    let read_before = sessions
        .current_code(&older.session, NOW)
        .await
        .unwrap()
        .expect("the session's code");
    let newer = issue(63, "m4").await;
    assert_eq!(
        q.delivery(&read_before).await.unwrap(),
        Some(Delivery::Queued)
    );
    let got = q.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    let first: Vec<QueuedMail> = got
        .iter()
        .filter(|m| m.mail.mail_ref == older.mail_ref)
        .cloned()
        .collect();
    q.mark_sent(&first, NOW + 1).await.unwrap();
    assert_eq!(q.delivery(&newer).await.unwrap(), Some(Delivery::Queued));
    // A crashed worker's lease ends: the mail is taken again.
    assert_eq!(
        q.claim_due(NOW + MIN, NOW + 2 * MIN, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// `session_store_tests!(make)` where `async fn make() -> Arc<dyn Backend>` gives a fresh store.
#[macro_export]
macro_rules! session_store_tests {
    ($make:path) => {
        #[tokio::test]
        async fn session_roundtrip() {
            $crate::suite::session_roundtrip($make().await).await
        }
        #[tokio::test]
        async fn touch_never_recreates() {
            $crate::suite::touch_never_recreates($make().await).await
        }
        #[tokio::test]
        async fn user_sessions_list_and_revoke() {
            $crate::suite::user_sessions_list_and_revoke($make().await).await
        }
        #[tokio::test]
        async fn codes_count_attempts_and_die() {
            $crate::suite::codes_count_attempts_and_die($make().await).await
        }
        #[tokio::test]
        async fn a_session_starts_with_its_code() {
            $crate::suite::a_session_starts_with_its_code($make().await).await
        }
        #[tokio::test]
        async fn codes_are_bound_to_session_email_and_purpose() {
            $crate::suite::codes_are_bound_to_session_email_and_purpose($make().await).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn redeem_is_atomic_under_a_race() {
            $crate::suite::redeem_is_atomic_under_a_race($make().await).await
        }
        #[tokio::test]
        async fn redeem_can_spend_an_attempt() {
            $crate::suite::redeem_can_spend_an_attempt($make().await).await
        }
        #[tokio::test]
        async fn limits_count_in_fixed_windows() {
            $crate::suite::limits_count_in_fixed_windows($make().await).await
        }
        #[tokio::test]
        async fn limits_in_one_call_stop_at_the_first_refusal() {
            $crate::suite::limits_in_one_call_stop_at_the_first_refusal($make().await).await
        }
        #[tokio::test]
        async fn spacings_refuse_hits_within_their_gap() {
            $crate::suite::spacings_refuse_hits_within_their_gap($make().await).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn limits_hold_under_concurrency() {
            $crate::suite::limits_hold_under_concurrency($make().await).await
        }
    };
}

/// `sql_store_tests!(make_users, make_queue)`: the user store and the mail queue (`make_queue`
/// gives one fresh store as its session store and its queue).
#[macro_export]
macro_rules! sql_store_tests {
    ($users:path, $queue:path) => {
        #[tokio::test]
        async fn users_are_unique_by_name_and_email() {
            $crate::suite::users_are_unique_by_name_and_email($users().await).await
        }
        #[tokio::test]
        async fn user_ids_are_kept() {
            $crate::suite::user_ids_are_kept($users().await).await
        }
        #[tokio::test]
        async fn username_keys_are_exact_and_exact_names_come_first() {
            $crate::suite::username_keys_are_exact_and_exact_names_come_first($users().await).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_lookups_each_get_their_own_answer() {
            $crate::suite::concurrent_lookups_each_get_their_own_answer($users().await).await
        }
        #[tokio::test]
        async fn the_mail_queue_leases_retries_and_reports() {
            let (sessions, queue) = $queue().await;
            $crate::suite::the_mail_queue_leases_retries_and_reports(sessions, queue).await
        }
    };
}

/// Two stores on the same backend (two instances) and eight workers claiming at once: every mail
/// is claimed exactly once, and again once the lease ends.
pub async fn workers_never_claim_the_same_mail(a: Arc<dyn Outbox>, b: Arc<dyn Outbox>) {
    const MAILS: usize = 60;
    for n in 0..MAILS {
        let c = CodeRecord {
            mail_ref: format!("race{n}"),
            ..code(n as u32, CodePurpose::Login, "a@example.com", "mac")
        };
        let mut m = mail_of(&c);
        m.to = format!("u{n}@example.com");
        a.enqueue(&m).await.unwrap();
    }
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let q = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = q.claim_due(NOW, NOW + MIN, 3).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.mail.mail_ref));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a mail was claimed twice: {all:?}"
    );
    assert_eq!(all.len(), MAILS, "every mail was claimed");
    assert!(b
        .claim_due(NOW + 1, NOW + MIN, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        a.claim_due(NOW + MIN, NOW + 2 * MIN, 100)
            .await
            .unwrap()
            .len(),
        MAILS
    );
}

/// `mail_queue_tests!(make_pair)` where `async fn make_pair() -> (Arc<dyn Outbox>, Arc<dyn
/// Outbox>, Arc<dyn Backend>)` gives two fresh stores on one empty queue (as two
/// instances), and the first as a session store: for the queues that live outside SQL.
#[macro_export]
macro_rules! mail_queue_tests {
    ($pair:path) => {
        #[tokio::test]
        async fn the_mail_queue_leases_retries_and_reports() {
            let (a, _, sessions) = $pair().await;
            $crate::suite::the_mail_queue_leases_retries_and_reports(sessions, a).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn workers_never_claim_the_same_mail() {
            let (a, b, _) = $pair().await;
            $crate::suite::workers_never_claim_the_same_mail(a, b).await
        }
    };
}

/// A code request's writes (`CodeRequestWrites`, or the same writes in steps): allowed, the session, the code and the mail are all
/// there; refused by a limit, nothing of the second request is.
pub async fn a_code_request_writes_all_or_nothing(
    desk: Arc<dyn CodeRequestWrites>,
    sessions: Arc<dyn Backend>,
    queue: Arc<dyn Outbox>,
) {
    let limit = |n: u32| LimitCheck::hit("desk:ip", n, Duration::from_secs(3600));
    let c51 = code(51, CodePurpose::Login, "a@example.com", "mac51");
    let c52 = code(52, CodePurpose::Login, "b@example.com", "mac52");
    let c53 = CodeRecord {
        mail_ref: "ref53".into(),
        ..code(51, CodePurpose::Login, "a@example.com", "again")
    };
    let first = desk
        .issue_code_and_mail(
            &[limit(1), LimitCheck::peek("desk:budget", 10)],
            NOW,
            Some(&session(51, None)),
            &c51,
            &mail_of(&c51),
        )
        .await
        .unwrap();
    assert_eq!(first, Limit::Allowed);
    assert!(sessions
        .load_session(&key(51), NOW + 1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        sessions
            .check_code(
                &key(51),
                CodePurpose::Login,
                &email("a@example.com"),
                "mac51",
                NOW + 1,
                5
            )
            .await
            .unwrap(),
        CodeCheck::Right
    );
    assert_eq!(queue.delivery(&c51).await.unwrap(), Some(Delivery::Queued));
    // The same limit refuses the next request: no session, no code, no mail.
    let second = desk
        .issue_code_and_mail(
            &[limit(1)],
            NOW + 2,
            Some(&session(52, None)),
            &c52,
            &mail_of(&c52),
        )
        .await
        .unwrap();
    assert!(matches!(second, Limit::Limited { retry_after_ms } if retry_after_ms > 0));
    assert!(sessions
        .load_session(&key(52), NOW + 3)
        .await
        .unwrap()
        .is_none());
    assert_eq!(queue.delivery(&c52).await.unwrap(), None);
    let claimed = queue.claim_due(NOW + 3, NOW + MIN, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].mail.mail_ref, "ref51");
    // A second code for a session that exists already: no new session, the code replaced.
    let third = desk
        .issue_code_and_mail(&[limit(5)], NOW + 4, None, &c53, &mail_of(&c53))
        .await
        .unwrap();
    assert_eq!(third, Limit::Allowed);
    assert_eq!(
        sessions
            .check_code(
                &key(51),
                CodePurpose::Login,
                &email("a@example.com"),
                "again",
                NOW + 5,
                5
            )
            .await
            .unwrap(),
        CodeCheck::Right
    );
    assert_eq!(queue.delivery(&c53).await.unwrap(), Some(Delivery::Queued));
}

/// The fingerprint of the deployment's secret (`SecretRecord`), through two stores on one
/// backend (two instances): recorded by exactly one of many instances starting at once, each
/// with its own secret, and then seen by all of them; the same fingerprint again changes
/// nothing; a rotation replaces it, and the old one does not come back.
pub async fn one_secret_fingerprint_per_deployment(
    a: Arc<dyn SecretRecord>,
    b: Arc<dyn SecretRecord>,
) {
    assert_eq!(a.recorded().await.unwrap(), None);
    let starts: Vec<_> = (0..16u32)
        .map(|n| {
            let s = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { (n, s.record_if_absent(&format!("{n:016x}")).await) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in starts {
        let (n, before) = t.await.expect("task");
        match before.expect("recorded") {
            None => winners.push(n),
            Some(fp) => {
                seen.insert(fp);
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one instance records its own");
    let winner = format!("{:016x}", winners[0]);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![winner.clone()],
        "every other instance finds the winner's"
    );
    assert_eq!(a.recorded().await.unwrap(), Some(winner.clone()));
    assert_eq!(b.recorded().await.unwrap(), Some(winner.clone()));
    assert_eq!(
        b.record_if_absent(&winner).await.unwrap(),
        Some(winner.clone())
    );
    // A rotation, through the other store.
    let rotated = "feedfacecafebeef";
    assert_eq!(b.replace(rotated).await.unwrap(), Some(winner.clone()));
    assert_eq!(
        a.record_if_absent(&winner).await.unwrap(),
        Some(rotated.to_owned()),
        "an instance still on the old secret sees the new one"
    );
    assert_eq!(a.recorded().await.unwrap(), Some(rotated.to_owned()));
    assert_eq!(a.replace(rotated).await.unwrap(), Some(rotated.to_owned()));
}

#[macro_export]
macro_rules! secret_record_tests {
    ($pair:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn one_secret_fingerprint_per_deployment() {
            let (a, b) = $pair().await;
            $crate::suite::one_secret_fingerprint_per_deployment(a, b).await
        }
    };
}

/// Every account keeps the user id it was created with (SPEC §6): found by row id, by name and
/// in the list with the same one; two accounts never share one.
pub async fn user_ids_are_kept(u: Arc<dyn Users>) {
    let alice = new_user("alice", "alice@example.com");
    let id = u.create_user(&alice).await.unwrap();
    let bob = new_user("bob", "bob@example.com");
    u.create_user(&bob).await.unwrap();
    let found = u.find_by_id(id).await.unwrap().expect("by row id");
    assert_eq!(found.public_id, alice.public_id);
    assert_eq!(found.username, "alice");
    let by_name = u.find_by_username(&keys("alice")).await.unwrap().unwrap();
    assert_eq!(by_name.public_id, alice.public_id);
    let ids: Vec<_> = u
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.public_id)
        .collect();
    assert_eq!(ids, vec![alice.public_id, bob.public_id]);
    assert!(u.find_by_id(id + 1000).await.unwrap().is_none());
    let mut again = new_user("carol", "carol@example.com");
    again.public_id = alice.public_id;
    assert!(
        u.create_user(&again).await.is_err(),
        "a user id is never given twice"
    );
}

/// The signing-key generations (SPEC §6) through two stores on one backend (two instances):
/// many instances starting at once end up with one first generation; a rotation through one is
/// seen by the other, the older generation retiring at the time given, and a second rotation
/// keeps that time.
pub async fn signing_key_generations_are_shared(
    a: Arc<dyn SigningKeyRecord>,
    b: Arc<dyn SigningKeyRecord>,
) {
    let starts: Vec<_> = (0..8u32)
        .map(|n| {
            let s = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.key_generations(NOW + Millis::from(n)).await })
        })
        .collect();
    for t in starts {
        let gens = t.await.expect("task").expect("generations");
        assert_eq!(gens.len(), 1, "one first generation: {gens:?}");
        assert_eq!((gens[0].generation, gens[0].retires_at), (1, None));
    }
    let new = b.rotate_keys(NOW + MIN, NOW + 61 * MIN).await.unwrap();
    assert_eq!((new.generation, new.retires_at), (2, None));
    let seen = a.key_generations(NOW + 2 * MIN).await.unwrap();
    let shape: Vec<_> = seen.iter().map(|g| (g.generation, g.retires_at)).collect();
    assert_eq!(shape, vec![(1, Some(NOW + 61 * MIN)), (2, None)]);
    a.rotate_keys(NOW + 3 * MIN, NOW + 63 * MIN).await.unwrap();
    let seen = b.key_generations(NOW + 4 * MIN).await.unwrap();
    let shape: Vec<_> = seen.iter().map(|g| (g.generation, g.retires_at)).collect();
    assert_eq!(
        shape,
        vec![
            (1, Some(NOW + 61 * MIN)),
            (2, Some(NOW + 63 * MIN)),
            (3, None)
        ]
    );
}

#[macro_export]
macro_rules! signing_key_tests {
    ($pair:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn signing_key_generations_are_shared() {
            let (a, b) = $pair().await;
            $crate::suite::signing_key_generations_are_shared(a, b).await
        }
    };
}

/// An account older than user ids (its id emptied behind the store's back, as the migration
/// leaves it) gets one when a store opens again, made from its creation time, and keeps it.
pub async fn accounts_older_than_user_ids_get_one<F, Fut>(
    before: Arc<dyn Users>,
    clear_ids: impl std::future::Future<Output = ()>,
    reopen: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Users>>,
{
    let id = before
        .create_user(&new_user("old", "old@example.com"))
        .await
        .unwrap();
    clear_ids.await;
    let after = reopen().await;
    let user = after.find_by_id(id).await.unwrap().expect("the account");
    let text = user.public_id.to_text();
    assert_eq!(&text[14..15], "7", "a version 7 UUID: {text}");
    let ms = i64::from_str_radix(&text[..8], 16).unwrap() << 16
        | i64::from_str_radix(&text[9..13], 16).unwrap();
    assert_eq!(ms, NOW, "made from the account's creation time");
    let again = reopen().await.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(again.public_id, user.public_id, "assigned once");
}
