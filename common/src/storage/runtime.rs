//! The process-wide tokio runtime that runs object-store futures for synchronous callers.

use std::future::Future;
use std::sync::OnceLock;

/// Two threads are plenty: the engines block on one request at a time per thread, and part
/// uploads overlap with the caller producing the next part.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hint-storage")
            .enable_all()
            .build()
            .expect("the storage runtime starts (threads and a timer)")
    })
}

/// Starts `future` on the storage runtime; its output arrives on the returned channel.
pub(crate) fn spawn<F>(future: F) -> std::sync::mpsc::Receiver<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        // The receiver may be gone (a dropped writer); the result is then of no use.
        let _ = tx.send(future.await);
    });
    rx
}

/// Runs `future` on the storage runtime and waits for it. Spawning (rather than `block_on`)
/// lets a thread that belongs to another runtime call this without panicking.
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn(future)
        .recv()
        .expect("a storage task panicked (see the message above)")
}
