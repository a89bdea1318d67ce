//! The command line's session commands (SPEC §4) against the stores of a running app: they go
//! through the same rules as the HTTP routes, so the operator cannot end a session under a user
//! who does not own it, exactly as `DELETE /api/sessions/{id}` refuses a stranger.
use crate::helpers::*;
use std::process::{Command, Output, Stdio};

/// `mailcode ARGS` on the app's stores (its data directory, database and Redis).
fn cli(app: &TestApp, args: &[&str]) -> Output {
    let s = &app.settings;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailcode"));
    cmd.env_remove("MAILCODE_CONFIG")
        .arg("--data-dir")
        .arg(&s.data_dir)
        .arg("--database-url")
        .arg(s.database_url.expose());
    if let Some(url) = &s.redis_url {
        cmd.arg("--redis-url")
            .arg(url.expose())
            .arg("--redis-prefix")
            .arg(&s.redis_prefix);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mailcode")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_command_line_ends_a_session_only_under_the_user_who_owns_it() {
    let app = spawn_app().await;
    let first = app.register("pat", "pat@example.com").await;
    let second = browser();
    app.sign_in(&second, "pat", "pat@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let stranger = app.register("quinn", "quinn@example.com").await;
    let list = app.get(&first, "/api/sessions").await.expect(200, "OK");
    let other = list.body["data"]["sessions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["current"] == false)
        .expect("the second session")["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    let listed = cli(&app, &["sessions", "list", "pat"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let lines = text(&listed.stdout);
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(
        lines.lines().any(|l| l.starts_with(&format!("{other}\t"))),
        "{lines}"
    );

    // Under another user, the session is not found: over HTTP and on the command line alike.
    let refused = cli(&app, &["sessions", "revoke", "quinn", "--id", &other]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains(&format!("quinn has no session {other}")),
        "{}",
        text(&refused.stderr)
    );
    assert!(!text(&refused.stdout).contains("ended"));
    answer(
        stranger
            .delete(app.url(&format!("/api/sessions/{other}")))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(404, "SESSION_NOT_FOUND");
    app.get(&second, "/api/me").await.expect(200, "OK");

    let ended = cli(&app, &["sessions", "revoke", "pat", "--id", &other]);
    assert!(ended.status.success(), "{}", text(&ended.stderr));
    assert!(text(&ended.stdout).contains("ended 1 session"));
    app.get(&second, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    app.get(&first, "/api/me").await.expect(200, "OK");
    app.get(&stranger, "/api/me").await.expect(200, "OK");

    // Without --id, every session of that user, and only theirs.
    let all = cli(&app, &["sessions", "revoke", "quinn"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert!(text(&all.stdout).contains("ended 1 session(s)"));
    app.get(&stranger, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    app.get(&first, "/api/me").await.expect(200, "OK");
}

/// `user list` shows each account's user id (SPEC §6), the one the API answers with; `keys
/// rotate` starts a new signing key that the running app signs with within its refresh.
#[tokio::test]
async fn the_command_line_lists_user_ids_and_rotates_signing_keys() {
    let app = spawn_app().await;
    let c = app.register("ida", "ida@example.com").await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    let id = me.body["data"]["user_id"].as_str().expect("id").to_owned();
    let listed = cli(&app, &["user", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let out = text(&listed.stdout);
    assert!(
        out.lines().any(|l| l.starts_with(&format!("{id}\tida\t"))),
        "{out}"
    );

    let kid = |token: &str| {
        jsonwebtoken::decode_header(token)
            .expect("JWT")
            .kid
            .expect("kid")
    };
    let first = app.post(&c, "/api/token", serde_json::json!({})).await;
    let first = kid(first.body["data"]["access_token"].as_str().expect("token"));
    let rotated = cli(&app, &["keys", "rotate"]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    assert!(
        text(&rotated.stdout).contains("signing with key 2"),
        "{}",
        text(&rotated.stdout)
    );
    app.advance(std::time::Duration::from_secs(11));
    let second = app.post(&c, "/api/token", serde_json::json!({})).await;
    let second = kid(second.body["data"]["access_token"].as_str().expect("token"));
    assert_ne!(first, second, "a new key signs after the rotation");
}
