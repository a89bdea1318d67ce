//! A Redis connection of its own for each HTTP thread.
//!
//! mailcode serves HTTP on one single-threaded Tokio runtime per core (`src/threads.rs`), so a
//! request runs start to end on the thread that accepted its connection. A connection manager's
//! driver task runs on the runtime that created it: a request using the one shared manager,
//! driven on the main runtime, hands every command to another thread and is woken by it for the
//! reply, two thread wake-ups per command. With a manager created on the HTTP thread itself the
//! command, the reply and the request stay on one thread (docs/benchmarks.md, finding 1).
//!
//! Only the HTTP threads get one (`crate::threads::PerThread`), and only for plain (single-node)
//! Redis; every other caller uses the shared manager. The first use on a thread starts
//! connecting in the background and goes on with the shared manager until the thread's own is
//! ready, so no request waits for a connection and a Redis that is down at that moment is
//! handled exactly as before (the shared manager's errors and reconnects); a failed attempt is
//! repeated a second later at the earliest.
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::threads;

/// How long after a failed attempt a thread tries to connect its own manager again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

enum Slot {
    Unused,
    Connecting,
    Ready(ConnectionManager),
    Failed(Instant),
}

/// What a Redis store needs to open one more connection like its shared one.
pub(super) struct PerThread {
    client: ::redis::Client,
    config: ConnectionManagerConfig,
    own: threads::PerThread<Slot>,
}

impl PerThread {
    pub(super) fn new(client: ::redis::Client, config: ConnectionManagerConfig) -> Arc<Self> {
        Arc::new(PerThread {
            client,
            config,
            own: threads::PerThread::new(|| Slot::Unused),
        })
    }

    /// This thread's own connection when it has one ready; `None` means: use the shared one.
    pub(super) fn for_this_thread(self: &Arc<Self>) -> Option<ConnectionManager> {
        self.own
            .with(|slot| match slot {
                Slot::Ready(m) => Some(m.clone()),
                Slot::Connecting => None,
                Slot::Failed(at) if at.elapsed() < RETRY_AFTER => None,
                Slot::Unused | Slot::Failed(_) => {
                    *slot = Slot::Connecting;
                    self.connect();
                    None
                }
            })
            .flatten()
    }

    /// Connects on this thread's runtime; the slot says when it is done.
    fn connect(self: &Arc<Self>) {
        // On an HTTP thread (the only place a slot exists), so the task runs on this thread's
        // single-threaded runtime and fills this thread's slot.
        let me = self.clone();
        tokio::spawn(async move {
            let made = ConnectionManager::new_with_config(me.client.clone(), me.config.clone())
                .await
                .map_err(
                    |e| tracing::debug!(error = %e, "the thread's own Redis connection failed"),
                );
            me.own.with(|slot| {
                *slot = match made {
                    Ok(m) => Slot::Ready(m),
                    Err(()) => Slot::Failed(Instant::now()),
                };
            });
        });
    }
}
