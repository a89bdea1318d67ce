//! SPEC §6 forward authentication behind real proxies: nginx `auth_request` and Caddy
//! `forward_auth`, each started on a free loopback port with the configuration
//! docs/integration.md shows, in front of an upstream that records what reaches it. The
//! upstream learns the user id from the proxy and only from it: a header the client sent is
//! replaced, an anonymous request or a cross-origin POST never reaches it.
use crate::helpers::*;
use axum::http::HeaderMap;
use reqwest::Client;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the upstream saw: the `X-Mailcode-User-Id` of each request that reached it.
#[derive(Clone, Default)]
struct Upstream(Arc<Mutex<Vec<Option<String>>>>);

impl Upstream {
    async fn start(self) -> u16 {
        let seen = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers
                    .get("x-mailcode-user-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Ok(mut s) = seen.0.lock() {
                    s.push(id.clone());
                }
                id.unwrap_or_default()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A proxy process, stopped with the test.
struct Proxy(Child);

impl Drop for Proxy {
    /// SIGTERM first, so that nginx's master stops its workers (a SIGKILL would orphan them),
    /// then SIGKILL if it is still there after two seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..80 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn need(binary: &str, package: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{binary} is missing: apt-get install -y {package} (or scripts/install-deps)");
}

async fn wait_until_listening(port: u16, proxy: &mut Proxy) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = proxy.0.try_wait() {
            panic!("the proxy exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the proxy does not listen on {port}");
}

fn mailcode_port(app: &TestApp) -> u16 {
    app.base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

async fn nginx(dir: &Path, mailcode: u16, upstream: u16) -> (Proxy, u16) {
    let bin = need("nginx", "nginx");
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /_mailcode_check {{
            internal;
            proxy_pass http://127.0.0.1:{mailcode}/api/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            # The host the browser addressed: the origin a state-changing request must come from.
            proxy_set_header Host $http_host;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }}
        location /app/ {{
            auth_request /_mailcode_check;
            auth_request_set $mailcode_user_id $upstream_http_x_mailcode_user_id;
            proxy_set_header X-Mailcode-User-Id $mailcode_user_id;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("config");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let mut proxy = Proxy(child);
    wait_until_listening(port, &mut proxy).await;
    (proxy, port)
}

async fn caddy(dir: &Path, mailcode: u16, upstream: u16) -> (Proxy, u16) {
    let bin = need("caddy", "caddy");
    let port = free_port();
    let conf = format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    # `route`: in this order, not Caddy's default directive order (which would strip the
    # headers after forward_auth copied them).
    route /app/* {{
        # Never pass on what a client says about itself, copied or not.
        request_header -X-Mailcode-*
        forward_auth 127.0.0.1:{mailcode} {{
            uri /api/auth/check
            copy_headers X-Mailcode-User-Id X-Mailcode-Username X-Mailcode-Email X-Mailcode-Session-Id
        }}
        reverse_proxy 127.0.0.1:{upstream}
    }}
}}
"#
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).expect("config");
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy starts");
    let mut proxy = Proxy(child);
    wait_until_listening(port, &mut proxy).await;
    (proxy, port)
}

/// The same story behind either proxy.
async fn through(proxy_port: u16, app: &TestApp, upstream: &Upstream) {
    let url = |path: &str| format!("http://127.0.0.1:{proxy_port}{path}");
    let name = unique("px");
    let email = format!("{name}@example.com");
    let c = app.register(&name, &email).await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    let user_id = me.body["data"]["user_id"].as_str().expect("id").to_owned();
    // The proxy is another origin to a cookie jar: the test sends the cookie by hand.
    let sid = app
        .sign_in(&bare(), &name, &email)
        .await
        .expect(200, "LOGIN_SUCCESS")
        .session_cookie()
        .expect("a session");
    let client = Client::new();
    let signed_in = |r: reqwest::RequestBuilder| r.header("cookie", format!("mailcode_sid={sid}"));

    // Signed in: the upstream learns who, from the proxy.
    let r = signed_in(client.get(url("/app/whoami")))
        .header("x-mailcode-user-id", "00000000-0000-7000-8000-000000000000")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap_or_default(),
        user_id,
        "the proxy's id, not the client's"
    );

    // Anonymous, even with a forged id: 401, and the upstream never hears of it.
    let before = upstream.seen().len();
    let r = client
        .get(url("/app/whoami"))
        .header("x-mailcode-user-id", &user_id)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    // A state-changing request with the cookie from a foreign origin: refused before the app.
    let r = signed_in(client.post(url("/app/tickets")))
        .header("origin", "https://evil.example")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(
        upstream.seen().len(),
        before,
        "neither reached the upstream"
    );
    // The same POST from the page's own origin goes through.
    let r = signed_in(client.post(url("/app/tickets")))
        .header("origin", format!("http://127.0.0.1:{proxy_port}"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Signed out: refused at once.
    answer(
        Client::new()
            .post(app.url("/api/logout"))
            .header("cookie", format!("mailcode_sid={sid}"))
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(200, "LOGGED_OUT");
    let r = signed_in(client.get(url("/app/whoami")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert!(upstream
        .seen()
        .iter()
        .all(|id| id.as_deref() == Some(user_id.as_str())));
}

#[tokio::test]
async fn nginx_auth_request_tells_the_upstream_who_is_signed_in_and_nobody_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = Upstream::default();
    let up = upstream.clone().start().await;
    // The proxy is the page's origin; mailcode trusts it for X-Forwarded-*.
    let app = spawn_with(|s| {
        s.trust_proxy = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let (_nginx, port) = nginx(dir.path(), mailcode_port(&app), up).await;
    through(port, &app, &upstream).await;
}

#[tokio::test]
async fn caddy_forward_auth_tells_the_upstream_who_is_signed_in_and_nobody_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = Upstream::default();
    let up = upstream.clone().start().await;
    let app = spawn_with(|s| {
        s.trust_proxy = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let (_caddy, port) = caddy(dir.path(), mailcode_port(&app), up).await;
    through(port, &app, &upstream).await;
}
