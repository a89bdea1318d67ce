//! A Redis connection of its own for each HTTP thread.
//!
//! mailcode serves HTTP on one single-threaded Tokio runtime per core (`src/app.rs`), so a
//! request runs start to end on the thread that accepted its connection. A connection manager's
//! driver task runs on the runtime that created it: a request using the one shared manager,
//! driven on the main runtime, hands every command to another thread and is woken by it for the
//! reply, two thread wake-ups per command. With a manager created on the HTTP thread itself the
//! command, the reply and the request stay on one thread (docs/benchmarks.md, finding 1).
//!
//! Only threads that called [`own_connections_on_this_thread`] get one, and only for plain
//! (single-node) Redis; every other caller uses the shared manager. The first use on a thread
//! starts connecting in the background and goes on with the shared manager until the thread's
//! own is ready, so no request waits for a connection and a Redis that is down at that moment
//! is handled exactly as before (the shared manager's errors and reconnects); a failed attempt is
//! repeated a second later at the earliest.
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after a failed attempt a thread tries to connect its own manager again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

enum Slot {
    Connecting,
    Ready(ConnectionManager),
    Failed(Instant),
}

thread_local! {
    /// `None` on threads that use the shared manager; otherwise one slot per Redis store (a
    /// process has one; tests have several).
    static OWN: RefCell<Option<Vec<(u64, Slot)>>> = const { RefCell::new(None) };
}

/// Lets Redis stores give this thread connections of its own, driven by the thread's runtime.
/// Call it only on a thread that runs one single-threaded runtime for its whole life: the
/// connections it gets are driven by that runtime.
pub fn own_connections_on_this_thread() {
    OWN.with(|own| *own.borrow_mut() = Some(Vec::new()));
}

/// What a Redis store needs to open one more connection like its shared one.
pub(super) struct PerThread {
    id: u64,
    client: ::redis::Client,
    config: ConnectionManagerConfig,
}

impl PerThread {
    pub(super) fn new(client: ::redis::Client, config: ConnectionManagerConfig) -> Arc<Self> {
        Arc::new(PerThread {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client,
            config,
        })
    }

    /// This thread's own connection when it has one ready; `None` means: use the shared one.
    pub(super) fn for_this_thread(self: &Arc<Self>) -> Option<ConnectionManager> {
        OWN.with(|own| {
            let mut own = own.try_borrow_mut().ok()?;
            let slots = own.as_mut()?;
            let Some(i) = slots.iter().position(|(id, _)| *id == self.id) else {
                slots.push((self.id, Slot::Connecting));
                self.connect();
                return None;
            };
            match &mut slots[i].1 {
                Slot::Ready(m) => Some(m.clone()),
                Slot::Connecting => None,
                Slot::Failed(at) => {
                    if at.elapsed() >= RETRY_AFTER {
                        slots[i].1 = Slot::Connecting;
                        self.connect();
                    }
                    None
                }
            }
        })
    }

    /// Connects on this thread's runtime; the slot says when it is done.
    fn connect(self: &Arc<Self>) {
        // Only a single-threaded runtime runs the task below on this thread, the one whose slot
        // it fills.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return;
        }
        let me = self.clone();
        runtime.spawn(async move {
            let made = ConnectionManager::new_with_config(me.client.clone(), me.config.clone())
                .await
                .map_err(
                    |e| tracing::debug!(error = %e, "the thread's own Redis connection failed"),
                );
            OWN.with(|own| {
                let mut own = own.borrow_mut();
                let Some(slots) = own.as_mut() else { return };
                if let Some((_, slot)) = slots.iter_mut().find(|(id, _)| *id == me.id) {
                    *slot = match made {
                        Ok(m) => Slot::Ready(m),
                        Err(()) => Slot::Failed(Instant::now()),
                    };
                }
            });
        });
    }
}
