//! The command line (SPEC §4): `mailcode` (same as `serve`), `user`, `sessions`, `migrate`,
//! `secret`, `keys`, `doctor`.
//! Passwords are read from standard input, never from argv (argv is visible to every user).
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{rfc3339, SystemClock};
use crate::config::{ServeArgs, Settings};
use crate::domain::{Email, Password, Username};
use crate::policy::Policy;

#[derive(Parser, Debug)]
#[command(
    name = "mailcode",
    version,
    about = "Email-code login service: one-time codes bound to server-side sessions that stick."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Inspect and end sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Compare this instance's server secret with the deployment's, or make it the
    /// deployment's (docs/operations.md, "One secret per deployment").
    #[command(subcommand)]
    Secret(SecretCmd),
    /// The signing keys of access tokens (SPEC §6).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Webhook deliveries that were given up (SPEC §7).
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Check a running deployment from the outside, the way a browser would, and explain each
    /// problem found and its fix. Exit status 1 when something is wrong.
    Doctor(crate::doctor::DoctorArgs),
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create an account; the password is read from standard input.
    Add { username: String, email: String },
    /// List accounts.
    List,
    /// Disable an account and end all of its sessions.
    Disable { user: String },
    /// Enable a disabled account.
    Enable { user: String },
    /// Set a new password (from standard input); ends all of the user's sessions.
    Passwd { user: String },
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Print the fingerprints of this instance's secret file and of the deployment's secret.
    /// Exit status 1 when they differ.
    Show,
    /// Make this instance's secret file the deployment's secret, after the new file was put on
    /// every instance; then restart every instance.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Start signing access tokens with a new key, on every instance within 10 s; the key
    /// before stays published until the last token it signed has expired.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// List the deliveries given up after 24 h of retries, newest first (kept a week).
    Failed,
    /// Send a given-up delivery again (by its webhook-id), retried for another 24 h by any
    /// running instance.
    Retry { id: String },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCmd {
    /// List a user's live sessions.
    List { user: String },
    /// End all of a user's sessions, or one with --id.
    Revoke {
        user: String,
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(Command::Doctor(args)) = cli.command {
        return crate::doctor::main(args);
    }
    let settings = match Settings::resolve(cli.serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailcode: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailcode: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => crate::app::serve(settings).await.map_err(|e| e.to_string()),
            cmd => admin(settings, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailcode: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `type` of an event body, for the listing.
fn event_type_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn read_password() -> Result<Password, String> {
    eprintln!("password (read from standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let pw = line.trim_end_matches(['\r', '\n']);
    Password::parse(pw).map_err(|e| format!("password: {e}"))
}

async fn admin(settings: Settings, cmd: Command) -> Result<(), String> {
    let built = crate::app::build(&settings, Arc::new(SystemClock), Policy::default())
        .await
        .map_err(|e| e.to_string())?;
    let core = built.core;
    let find = |who: String| {
        let core = core.clone();
        async move {
            core.find_user(&who)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no user {who:?}"))
        }
    };
    match cmd {
        Command::Serve | Command::Doctor(_) => unreachable!("handled by main"),
        Command::Migrate => println!("database is up to date"),
        Command::Secret(cmd) => secret(&core, &settings, cmd).await?,
        Command::Keys(KeysCmd::Rotate) => {
            let (generation, retires_at) = core
                .rotate_signing_keys()
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "signing with key {generation} within 10 s on every instance; the key before \
                 stays published until {}",
                rfc3339(retires_at)
            );
        }
        Command::Webhooks(WebhooksCmd::Failed) => {
            let failed = core.failed_webhooks().await.map_err(|e| e.to_string())?;
            if failed.is_empty() {
                println!("no webhook delivery was given up");
            }
            for f in failed {
                // The URL without its credentials; the error as the store kept it (clipped).
                println!(
                    "{}	{}	{}	attempts {}	{}	{}",
                    f.id,
                    rfc3339(f.created_at),
                    crate::secret_url::SecretUrl::new(f.to).redacted(),
                    f.attempts,
                    event_type_of(&f.body),
                    f.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Webhooks(WebhooksCmd::Retry { id }) => {
            if core.retry_webhook(&id).await.map_err(|e| e.to_string())? {
                println!("{id} queued again: a running instance delivers it");
            } else {
                return Err(format!(
                    "no given-up webhook delivery {id:?}: `mailcode webhooks failed` lists them"
                ));
            }
        }
        Command::User(UserCmd::Add { username, email }) => {
            let username = Username::parse(&username).map_err(|e| format!("username: {e}"))?;
            let email = Email::parse(&email).map_err(|e| format!("email: {e}"))?;
            let password = read_password()?;
            let user_id = core
                .operator_add_user(&username, &email, &password)
                .await
                .map_err(|e| e.to_string())?;
            println!("created user {user_id} {username} <{email}>");
        }
        Command::User(UserCmd::List) => {
            for u in core.list_users().await.map_err(|e| e.to_string())? {
                // The user id (SPEC §6) first: what applications key their rows on; the row id
                // stays internal.
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.public_id,
                    u.username,
                    u.email,
                    if u.disabled { "disabled" } else { "active" },
                    rfc3339(u.created_at)
                );
            }
        }
        Command::User(UserCmd::Disable { user }) => {
            let u = find(user).await?;
            let n = core.disable_user(&u).await.map_err(|e| e.to_string())?;
            println!("disabled {}; ended {n} session(s)", u.username);
        }
        Command::User(UserCmd::Enable { user }) => {
            let u = find(user).await?;
            core.enable_user(&u).await.map_err(|e| e.to_string())?;
            println!("enabled {}", u.username);
        }
        Command::User(UserCmd::Passwd { user }) => {
            let u = find(user).await?;
            let password = read_password()?;
            let n = core
                .set_password(&u, &password)
                .await
                .map_err(|e| e.to_string())?;
            println!("password of {} changed; ended {n} session(s)", u.username);
        }
        Command::Sessions(SessionsCmd::List { user }) => {
            let u = find(user).await?;
            for s in core.user_sessions(&u).await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\tcreated {}\tlast seen {}\t{}\t{}",
                    s.key.as_str(),
                    s.kind.as_str(),
                    rfc3339(s.created_at),
                    rfc3339(s.last_seen_at),
                    s.ip,
                    s.user_agent
                );
            }
        }
        Command::Sessions(SessionsCmd::Revoke { user, id }) => {
            let u = find(user).await?;
            match id {
                Some(id) => {
                    let key = crate::domain::SessionKey::parse(&id)
                        .ok_or("--id: not a session id (64 hex digits)")?;
                    match core.revoke_user_session(&u, &key).await {
                        Ok(()) => println!("ended 1 session"),
                        Err(crate::flows::FlowError::SessionNotFound) => {
                            return Err(format!("{} has no session {id}", u.username))
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                None => {
                    let n = core
                        .revoke_user_sessions(&u)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("ended {n} session(s)");
                }
            }
        }
    }
    Ok(())
}

/// `mailcode secret show|rotate` (`crate::deployment`): fingerprints only, never the secret.
async fn secret(
    core: &crate::flows::Core,
    settings: &Settings,
    cmd: SecretCmd,
) -> Result<(), String> {
    let ours = core.secret_fingerprint();
    let file = settings.secret_file.display();
    match cmd {
        SecretCmd::Show => {
            let recorded = core.deployment_secret().await.map_err(|e| e.to_string())?;
            println!("this instance's secret: {ours} ({file})");
            match recorded {
                None => println!(
                    "the deployment's secret: none recorded yet (the first instance to start records its own)"
                ),
                Some(r) if r == ours => println!("the deployment's secret: {r}, the same"),
                Some(r) => {
                    println!("the deployment's secret: {r}, another one");
                    return Err(crate::deployment::mismatch_message(
                        &ours,
                        &r,
                        &settings.secret_file,
                    ));
                }
            }
        }
        SecretCmd::Rotate => {
            let done = core
                .rotate_deployment_secret()
                .await
                .map_err(|e| e.to_string())?;
            match done.previous {
                Some(p) if p == done.current => {
                    println!(
                        "the deployment's secret already is this instance's ({}, {file}): nothing changed",
                        done.current
                    );
                    return Ok(());
                }
                Some(p) => println!(
                    "the deployment's secret is now {} ({file}), was {p}",
                    done.current
                ),
                None => println!(
                    "the deployment's secret is now {} ({file}); none was recorded",
                    done.current
                ),
            }
            println!("{}", crate::deployment::ROTATION_EFFECTS);
        }
    }
    Ok(())
}
