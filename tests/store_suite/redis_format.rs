//! The Redis record format has one definition (`src/store/redis/codec/format.rs`) that both the
//! codec and the Lua scripts follow: here, on a real Redis, the prelude every script starts
//! with reads each field of what the codec wrote (a session, its code, a queued mail) at the
//! position and in the form the table gives it. A field renamed or moved in the table, the codec
//! or the prelude alone fails here.
use crate::redis::redis_server::RedisServer;
use crate::redis::{open_on, raw, unique_prefix};
use crate::suite::{user_id_for, NOW};
use mailcode::domain::{CodePurpose, SessionKey, SessionKind, SessionRecord, SessionUser};
use mailcode::store::redis::format::{lua_prelude, Form, Record, CODE, ENTRY, SESSION};
use mailcode::store::redis::Keys;
use mailcode::store::{CodeRecord, CodeStore, Outbox, OutgoingMail, SessionStore};
use std::collections::HashMap;
use std::time::Duration;

const MIN: i64 = 60_000;

/// Base 62 as the format writes it (digits, then lower and upper case letters).
fn b62(mut n: u128) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A Lua expression for each field of `record` in the value `var`: numbers decoded in their
/// form and written back in decimal, texts as they are.
fn probes(record: &Record, var: &str) -> Vec<String> {
    record
        .fields
        .iter()
        .map(|(name, form)| {
            let at = format!("field({var}, {}_{})", record.lua, name.to_ascii_uppercase());
            match form {
                Form::Base62 => format!("string.format('%.0f', dec({at}))"),
                Form::Decimal => format!("string.format('%.0f', tonumber({at}))"),
                Form::Text => at,
            }
        })
        .collect()
}

#[tokio::test]
async fn the_scripts_read_each_field_where_the_codec_wrote_it() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let store = open_on(server, &prefix, Duration::from_secs(2)).await;
    let key = SessionKey::parse(&"5e".repeat(32)).expect("key");
    let session = SessionRecord {
        key: key.clone(),
        kind: SessionKind::Token,
        user: Some(SessionUser {
            id: 1_234_567,
            username: "bob".into(),
            email: "b@example.com".into(),
            public_id: Some(user_id_for(1_234_567)),
        }),
        created_at: NOW,
        last_seen_at: NOW + 5,
        idle_expires_at: NOW + 5 + 30 * MIN,
        absolute_expires_at: NOW + 7 * 24 * 60 * MIN,
        user_agent: "agent".into(),
        ip: "203.0.113.7".into(),
    };
    store.create_session(&session).await.expect("session");
    let code = CodeRecord {
        session: key.clone(),
        purpose: CodePurpose::Login,
        email: "b@example.com".into(),
        mac: "m4c".into(),
        created_at: NOW + 5,
        expires_at: NOW + 10 * MIN,
        resend_available_at: NOW + MIN,
        attempts: 3,
        mail_ref: "ref7".into(),
    };
    store.issue_code(&code).await.expect("code");
    let mail = OutgoingMail {
        mail_ref: "ref7".into(),
        code: Some(code.key()),
        to: "b@example.com".into(),
        order: "sealed order".into(),
        expires_at: NOW + 10 * MIN,
        created_at: NOW + 5,
    };
    store.enqueue(&mail).await.expect("queued");

    let keys = Keys::new(&prefix);
    let mut con = raw(server).await;
    let record: String = redis::cmd("GET")
        .arg(keys.session(&key))
        .query_async(&mut con)
        .await
        .expect("the session's record");
    let entry: String = redis::cmd("LINDEX")
        .arg(keys.mail_new())
        .arg(0)
        .query_async(&mut con)
        .await
        .expect("the queue entry");

    let mut reads = Vec::new();
    for (record, var) in [(&SESSION, "v"), (&CODE, "c"), (&ENTRY, "m")] {
        reads.extend(probes(record, var));
    }
    let script = format!(
        "{}\nlocal v, m = ARGV[1], ARGV[2]\nlocal _, list = codes_of(v)\nlocal c = list[1][2]\nreturn {{{}}}\n",
        lua_prelude(),
        reads.join(", ")
    );
    let read: Vec<String> = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .arg(&record)
        .arg(&entry)
        .query_async(&mut con)
        .await
        .expect("the prelude reads every field");

    let ip = u32::from("203.0.113.7".parse::<std::net::Ipv4Addr>().expect("ip"));
    let expected: HashMap<&str, Vec<(&str, String)>> = HashMap::from([
        (
            "SESSION",
            vec![
                ("created", NOW.to_string()),
                ("seen", "5".into()),
                ("idle", (30 * MIN).to_string()),
                ("absolute", (7 * 24 * 60 * MIN).to_string()),
                // The row id, then the user id's 128 bits.
                (
                    "who",
                    format!(
                        "t{}.{}",
                        b62(1_234_567),
                        b62(user_id_for(1_234_567).as_u128())
                    ),
                ),
                ("ip", b62(u128::from(ip))),
            ],
        ),
        (
            "CODE",
            vec![
                ("attempts", "3".into()),
                ("expires", (NOW + 10 * MIN).to_string()),
                ("created", (NOW + 5).to_string()),
                ("resend", (NOW + MIN).to_string()),
                ("email", "b@example.com".into()),
                ("mac", "m4c".into()),
                ("mail_ref", "ref7".into()),
                ("mail_state", "q".into()),
            ],
        ),
        (
            "ENTRY",
            vec![
                ("mail_ref", "ref7".into()),
                ("attempts", "0".into()),
                ("expires", (NOW + 10 * MIN).to_string()),
                ("created", (NOW + 5).to_string()),
                ("code_key", keys.code(&key, CodePurpose::Login)),
                ("to", "b@example.com".into()),
                ("order", "sealed order".into()),
            ],
        ),
    ]);
    let mut read = read.into_iter();
    for record in [&SESSION, &CODE, &ENTRY] {
        let want = &expected[record.lua];
        assert_eq!(
            record
                .fields
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .len(),
            want.len(),
            "{}: every field of the table is checked here",
            record.lua
        );
        for (name, _) in record.fields {
            let got = read.next().expect("one read per field");
            let value = want
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{}: no field {name} expected", record.lua));
            assert_eq!(got, value.1, "{}.{name}", record.lua);
        }
    }
}
