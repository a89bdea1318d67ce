//! Thread affinity: the threads that serve HTTP, and what may live on each of them.
//!
//! mailcode serves HTTP on threads of its own, each running one single-threaded Tokio runtime for
//! its whole life ([`spawn`]) with its own listening socket on the shared address
//! ([`HttpThreads`], `SO_REUSEPORT`: the kernel spreads new connections over them). A request is
//! therefore parsed, handled and answered on the thread that accepted its connection. Tokio's
//! multi-threaded runtime moved requests and Redis replies between its workers: up to 0.3 thread
//! wake-ups per `GET /api/me`, and a rate that switched between two levels run to run
//! (docs/benchmarks.md, finding 1). Everything else (mail worker, sweeper, SQL writes) stays on
//! the main runtime.
//!
//! A store keeps what must not cross threads on the hot path in a [`PerThread`] value: a Redis
//! connection driven by the thread's own runtime (`store/redis/per_thread.rs`), an account
//! lookup batcher (`store/sqlite.rs`). This module is the only place that knows which threads
//! those are; a store never asks which runtime it runs on.
//!
//! Must not: hand out a [`PerThread`] value on a thread it did not start, nor outside that
//! thread's runtime (a value may own tasks of that runtime); take a lock on the hot path.
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

// ---- values per thread ----

/// One value of a [`PerThread`] on this thread, and whose it is.
struct Entry {
    /// The [`PerThread`] it belongs to; dead once every clone of that one is dropped.
    owner: Weak<dyn Any + Send + Sync>,
    value: Box<dyn Any>,
}

thread_local! {
    /// `None` except while a thread of [`spawn`] runs its task; then this thread's values.
    static VALUES: RefCell<Option<Vec<Entry>>> = const { RefCell::new(None) };
}

/// A value made once on each thread of [`spawn`] (the HTTP threads), on the first use there, and
/// reached from that thread without a lock. Off those threads there is none: the caller uses
/// what it shares between threads instead. Clones share the values.
pub struct PerThread<T> {
    make: Arc<Maker<T>>,
}

struct Maker<T>(Box<dyn Fn() -> T + Send + Sync>);

impl<T> Clone for PerThread<T> {
    fn clone(&self) -> Self {
        PerThread {
            make: self.make.clone(),
        }
    }
}

impl<T: 'static> PerThread<T> {
    /// `make` runs on the thread that will own the value, inside its runtime: a task it spawns
    /// (`tokio::spawn`) runs on that thread.
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        PerThread {
            make: Arc::new(Maker(Box::new(make))),
        }
    }

    /// Runs `f` with this thread's value, made first if this thread has none yet. `None` off
    /// the threads of [`spawn`], and inside another `with` on this thread (`f` must not call
    /// `with`): the caller then uses its shared value.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        VALUES.with(|values| {
            {
                let mut values = values.try_borrow_mut().ok()?;
                let entries = values.as_mut()?;
                if let Some(e) = entries.iter_mut().find(|e| self.owns(e)) {
                    return e.value.downcast_mut::<T>().map(f);
                }
            }
            // Made without the borrow, so that `make` may use other `PerThread`s.
            let value = (self.make.0)();
            let dead = {
                let mut values = values.try_borrow_mut().ok()?;
                let entries = values.as_mut()?;
                // The values of stores closed since (tests open many): dropped here, on a first
                // use, so that no request pays for the check.
                let (live, dead): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries)
                    .into_iter()
                    .partition(|e| e.owner.strong_count() > 0);
                *entries = live;
                let owner: Weak<dyn Any + Send + Sync> = Arc::downgrade(&self.make) as _;
                entries.push(Entry {
                    owner,
                    value: Box::new(value),
                });
                dead
            };
            // Dropped without the borrow: a value's drop may reach other `PerThread`s.
            drop(dead);
            let mut values = values.try_borrow_mut().ok()?;
            let entry = values.as_mut()?.iter_mut().find(|e| self.owns(e))?;
            entry.value.downcast_mut::<T>().map(f)
        })
    }

    /// By address: the entry's `Weak` keeps the allocation, so no later `PerThread` has it.
    fn owns(&self, e: &Entry) -> bool {
        std::ptr::addr_eq(e.owner.as_ptr(), Arc::as_ptr(&self.make))
    }
}

// ---- the threads ----

/// A thread of [`spawn`].
pub struct Thread<T> {
    handle: std::thread::JoinHandle<T>,
    ended: oneshot::Receiver<()>,
}

impl<T> Thread<T> {
    /// Waits, without blocking the runtime, until the thread's task has returned and its
    /// runtime has stopped, with every task still on it.
    pub async fn ended(self) {
        let _ = self.ended.await;
    }

    /// Blocks until the thread has ended: the task's answer, or its panic.
    pub fn join(self) -> std::thread::Result<T> {
        self.handle.join()
    }
}

/// Starts a thread named `name` that runs `task` on a single-threaded runtime of its own, for
/// the thread's whole life: the threads on which [`PerThread`] values exist. A timer stays
/// pending on it (`keep_a_timer_pending`). The runtime is built here, so that a failure to
/// build it is this call's error.
pub fn spawn<F, Fut>(name: String, task: F) -> std::io::Result<Thread<Fut::Output>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ended_tx, ended) = oneshot::channel();
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        let out = runtime.block_on(async move {
            VALUES.with(|v| *v.borrow_mut() = Some(Vec::new()));
            tokio::spawn(keep_a_timer_pending());
            let out = task().await;
            // Dropped inside the runtime whose tasks they may own.
            let values = VALUES.with(|v| v.borrow_mut().take());
            drop(values);
            out
        });
        drop(runtime);
        let _ = ended_tx.send(());
        out
    })?;
    Ok(Thread { handle, ended })
}

/// How often a thread's idle timer fires (`keep_a_timer_pending`): shorter than every timeout a
/// request sets (the store's, 1.2 s by default, and the request's, 10 s).
const TIMER_ANCHOR: Duration = Duration::from_millis(250);

/// Keeps a timer due within [`TIMER_ANCHOR`] registered on a thread at all times. Tokio's timer
/// driver writes its runtime's eventfd (a `write` system call, then a wake-up of `epoll_wait`)
/// whenever a timer is registered that is due before the earliest one it knew of when it last
/// looked at its wheel, and always when that wheel was empty then. A request sets two timeouts
/// (the request's and the store operation's); with none pending between bursts, that was 0.55
/// eventfd `write`s per `GET /api/me` under load (`perf stat`, docs/benchmarks.md). With this
/// timer pending, every request's timeout is due later than the earliest known one, and
/// registering it writes nothing. It costs four wake-ups a second on an idle thread.
async fn keep_a_timer_pending() {
    let mut tick = tokio::time::interval(TIMER_ANCHOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

// ---- the HTTP threads ----

/// An address that could not be bound or listened on, or a thread that could not start.
#[derive(Debug)]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The listening sockets of the HTTP threads, bound before any thread starts.
pub struct HttpThreads {
    pub addr: SocketAddr,
    /// Listening and non-blocking, one per thread.
    listeners: Vec<std::net::TcpListener>,
}

impl HttpThreads {
    /// Binds `threads` sockets to `listen`. A plain bind comes first, so that an address
    /// another process (a second mailcode among them) listens on is refused as before instead
    /// of being shared with it; it also resolves port 0. That first socket never listens: a
    /// client that connected to it would be cut off when it closes.
    pub fn bind(listen: SocketAddr, threads: usize) -> Result<Self, ListenError> {
        let fail = |addr, source| ListenError { addr, source };
        let socket = |addr: SocketAddr| {
            if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
        };
        let addr = socket(listen)
            .and_then(|probe| {
                // As a listener's bind: connections of an earlier run still in TIME_WAIT on
                // this port do not count, a listening socket does.
                probe.set_reuseaddr(true)?;
                probe.bind(listen)?;
                probe.local_addr()
            })
            .map_err(|e| fail(listen, e))?;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads.max(1) {
            let listener = socket(addr)
                .and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.set_reuseport(true)?;
                    s.bind(addr)?;
                    // `listen` registers the socket with the calling runtime: it is taken out
                    // of it again for the thread's own.
                    s.listen(1024)?.into_std()
                })
                .map_err(|e| fail(addr, e))?;
            listeners.push(listener);
        }
        Ok(HttpThreads { addr, listeners })
    }

    /// Starts one thread per socket ([`spawn`]), each once the one before accepts; each
    /// returned task ends when its thread has drained its connections after `stop`.
    pub async fn serve(
        self,
        app: crate::http::App,
        admission: Arc<crate::http::server::Admission>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, ListenError> {
        let addr = self.addr;
        let fail = move |source| ListenError { addr, source };
        let mut done = Vec::new();
        for (i, listener) in self.listeners.into_iter().enumerate() {
            let app = app.clone();
            let admission = admission.clone();
            let stop = stop.clone();
            let (ready, ready_rx) = oneshot::channel::<std::io::Result<()>>();
            let thread = spawn(format!("mailcode-http-{i}"), move || async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                crate::http::server::serve(listener, app, admission, stop).await;
            })
            .map_err(fail)?;
            ready_rx
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP thread ended")))
                .map_err(fail)?;
            done.push(tokio::spawn(thread.ended()));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A value is made once per thread of `spawn`, kept there, shared by clones, and absent
    /// elsewhere.
    #[test]
    fn a_value_is_made_once_on_each_thread_and_nowhere_else() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let per_thread = PerThread::new(move || counter.fetch_add(1, Ordering::SeqCst));
        assert_eq!(per_thread.with(|v| *v), None, "not a thread of `spawn`");
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let mine = per_thread.clone();
                spawn(format!("test-{i}"), move || async move {
                    let first = mine.with(|v| *v).expect("a thread of `spawn`");
                    let again = mine.clone().with(|v| *v).expect("the same value");
                    assert_eq!(first, again);
                    // Inside `with`, another `with` gets nothing (no second borrow).
                    assert_eq!(mine.with(|_| mine.with(|v| *v)), Some(None));
                    first
                })
                .expect("thread starts")
            })
            .collect();
        let mut seen: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1], "one value per thread");
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    /// The value of a `PerThread` whose every clone was dropped goes at the next first use on
    /// the thread; another `PerThread` of the same type never sees it.
    #[test]
    fn a_dropped_owners_value_is_neither_shared_nor_kept() {
        let alive = Arc::new(());
        let probe = alive.clone();
        let thread = spawn("test".into(), move || async move {
            let made = probe.clone();
            let first = PerThread::new(move || made.clone());
            assert_eq!(first.with(|v| Arc::ptr_eq(v, &probe)), Some(true));
            // Here, the test's, `probe`, the maker's and the value.
            assert_eq!(Arc::strong_count(&probe), 4);
            drop(first);
            assert_eq!(
                Arc::strong_count(&probe),
                3,
                "the value stays until a first use"
            );
            let second = PerThread::new(|| Arc::new(()));
            assert_eq!(second.with(|v| Arc::ptr_eq(v, &probe)), Some(false));
            assert_eq!(Arc::strong_count(&probe), 2, "the first value was dropped");
        })
        .expect("thread starts");
        thread.join().unwrap();
        assert_eq!(Arc::strong_count(&alive), 1);
    }
}
