//! Group commit: one writer thread drains a bounded queue into one transaction per
//! batch, then tells every submitter its entry is durable.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use crate::{Counter, Entry, Store};

/// Called once with `true` after the entry is durable, or `false` if the commit failed.
pub type Completion = Box<dyn FnOnce(bool) + Send>;

enum Message {
    Entry(Entry, Completion),
    Counters(Vec<Counter>),
    PruneRaw(i64),
}

/// The queue is full; the entry was not accepted (the caller must not acknowledge it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage queue is full")]
pub struct QueueFull;

/// Submits entries to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Submitter {
    tx: SyncSender<Message>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Submitter")
    }
}

impl Submitter {
    /// Queues an entry; `done` runs on the writer thread after the commit.
    pub fn submit(&self, entry: Entry, done: Completion) -> Result<(), QueueFull> {
        self.tx.try_send(Message::Entry(entry, done)).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => QueueFull,
        })
    }

    /// Queues a snapshot of the ingestion counters (best effort).
    pub fn save_counters(&self, counters: Vec<Counter>) {
        let _ = self.tx.try_send(Message::Counters(counters));
    }

    /// Queues deletion of raw packets older than `before_ms` (best effort).
    pub fn prune_raw(&self, before_ms: i64) {
        let _ = self.tx.try_send(Message::PruneRaw(before_ms));
    }
}

/// The writer thread.
#[derive(Debug)]
pub struct GroupCommitter {
    handle: JoinHandle<()>,
}

impl GroupCommitter {
    /// Starts the writer thread owning `store`. `capacity` bounds the queue; at most
    /// `max_batch` entries go into one transaction.
    pub fn spawn<S: Store + 'static>(store: S, capacity: usize, max_batch: usize) -> (Self, Submitter) {
        let (tx, rx) = sync_channel(capacity.max(1));
        let handle = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || run(store, &rx, max_batch.max(1)))
            .expect("spawning the storage writer thread");
        (Self { handle }, Submitter { tx })
    }

    /// Waits until every submitter is dropped and the queue is drained.
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

fn run<S: Store>(mut store: S, rx: &Receiver<Message>, max_batch: usize) {
    let mut entries = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Message::Entry(e, done) => {
                    entries.push(e);
                    completions.push(done);
                }
                Message::Counters(c) => {
                    if let Err(e) = store.save_counters(&c) {
                        tracing::warn!(error = %e, "saving ingestion counters failed");
                    }
                }
                Message::PruneRaw(before) => match store.prune_raw(before) {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "raw packet retention applied"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "raw packet retention failed"),
                },
            }
            if entries.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if entries.is_empty() {
            continue;
        }
        let ok = match store.commit(&entries) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, batch = entries.len(), "commit failed; requests stay unacknowledged");
                false
            }
        };
        entries.clear();
        for done in completions.drain(..) {
            done(ok);
        }
    }
}
