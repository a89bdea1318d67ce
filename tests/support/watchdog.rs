// Shared by the test servers (`include!`d by redis_server.rs, redis_cluster.rs,
// redis_sentinel.rs and mariadb_server.rs, so that each stays includable with `#[path]` from any
// test binary): how a server is started so that it dies with the test process.

/// A path quoted for `sh`.
fn sh_quote(p: &std::path::Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Starts `server` (a shell command line) behind an `sh` watchdog and returns the watchdog. The
/// outer shell reaps the server when it exits; the watcher kills it once the test process
/// ($PPID, inherited by the subshell) is gone and then removes `dir`, which a `static` server
/// never gets to do itself. The server's pid is written to `pidfile`.
fn spawn_watched(
    server: &str,
    pidfile: &std::path::Path,
    dir: &std::path::Path,
) -> std::process::Child {
    let script = format!(
        "{server} & p=$!; echo $p > {pidfile}; \
         ( while kill -0 $PPID 2>/dev/null && kill -0 $p 2>/dev/null; do sleep 0.2; done; \
           if ! kill -0 $PPID 2>/dev/null; then kill -9 $p 2>/dev/null; sleep 0.5; rm -rf {dir}; fi ) & \
         wait $p",
        pidfile = sh_quote(pidfile),
        dir = sh_quote(dir),
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh starts")
}
