//! Group commit: one writer thread drains a bounded queue into one journal append per
//! batch, then tells every submitter its packet is durable.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use crate::{Journal, Position, RawPacket};

/// Called once with `true` after the packet is durable, or `false` if the append failed.
pub type Completion = Box<dyn FnOnce(bool) + Send>;

/// The queue is full; the packet was not accepted (the caller must not acknowledge it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage queue is full")]
pub struct QueueFull;

/// Submits packets to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Submitter {
    tx: SyncSender<(RawPacket, Completion)>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Submitter")
    }
}

impl Submitter {
    /// Queues a packet; `done` runs on the writer thread after the append.
    pub fn submit(&self, packet: RawPacket, done: Completion) -> Result<(), QueueFull> {
        self.tx.try_send((packet, done)).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => QueueFull,
        })
    }
}

/// The writer thread.
#[derive(Debug)]
pub struct GroupCommitter {
    handle: JoinHandle<Journal>,
}

impl GroupCommitter {
    /// Starts the writer thread owning `journal`. `capacity` bounds the queue; at most
    /// `max_batch` packets go into one append. After each append, `appended` receives
    /// the batch with the journal positions before and after it, so a consumer can use
    /// the packets without reading them back from disk.
    pub fn spawn(
        journal: Journal,
        capacity: usize,
        max_batch: usize,
        appended: impl Fn(Position, Position, Vec<RawPacket>) + Send + 'static,
    ) -> (Self, Submitter) {
        let (tx, rx) = sync_channel(capacity.max(1));
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run(journal, &rx, max_batch.max(1), &appended))
            .expect("spawning the journal writer thread");
        (Self { handle }, Submitter { tx })
    }

    /// Waits until every submitter is dropped and the queue is drained; returns the
    /// journal.
    pub fn join(self) -> Option<Journal> {
        self.handle.join().ok()
    }
}

fn run(
    mut journal: Journal,
    rx: &Receiver<(RawPacket, Completion)>,
    max_batch: usize,
    appended: &dyn Fn(Position, Position, Vec<RawPacket>),
) -> Journal {
    let mut packets = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    while let Ok((p, done)) = rx.recv() {
        packets.push(p);
        completions.push(done);
        while packets.len() < max_batch {
            let Ok((p, done)) = rx.try_recv() else { break };
            packets.push(p);
            completions.push(done);
        }
        let start = journal.position();
        let result = journal.append(&packets);
        let ok = result.is_ok();
        for done in completions.drain(..) {
            done(ok);
        }
        match result {
            Ok(end) => appended(start, end, std::mem::replace(&mut packets, Vec::with_capacity(max_batch))),
            Err(e) => {
                tracing::error!(error = %e, batch = packets.len(), "journal append failed; requests stay unacknowledged");
                packets.clear();
            }
        }
    }
    journal
}
