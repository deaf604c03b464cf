//! The audit log file (`<data_dir>/auth.log`): one JSON line per decision, written by a
//! dedicated thread so the I/O tasks never wait on the disk.
//!
//! Lines go through a bounded queue; the writer takes everything queued, writes it in
//! one `write` and flushes whenever the queue runs dry, then naps for 2 ms. A full queue is counted and
//! reported (at most one warning every ten seconds), never waited on. A clean shutdown
//! writes every line queued before it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lock;

/// Lines queued at most (about 20 MB of typical lines).
pub const QUEUE_LINES: usize = 65_536;
/// How long a shutdown waits for the last senders (requests still being decided).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The writer's pause after each write.
const NAP: Duration = Duration::from_millis(2);
/// Least time between two "queue full" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The sending side, shared by every authentication task.
#[derive(Debug)]
pub struct AuditLog {
    queue: SyncSender<Vec<u8>>,
    /// Lines refused because the queue was full.
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// The writer thread; [`AuditWriter::finish`] drains it.
#[derive(Debug)]
pub struct AuditWriter {
    thread: JoinHandle<()>,
    stopping: Arc<AtomicBool>,
}

impl AuditLog {
    /// Starts the writer thread appending to `file`.
    pub fn spawn(file: File, capacity: usize) -> std::io::Result<(Self, AuditWriter)> {
        let (queue, lines) = std::sync::mpsc::sync_channel(capacity);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread =
            std::thread::Builder::new().name("audit".into()).spawn(move || write_lines(file, &lines, &stop))?;
        Ok((
            Self { queue, refused: AtomicU64::new(0), last_warning: Mutex::new(None) },
            AuditWriter { thread, stopping },
        ))
    }

    /// Queues one line (without its newline). Never blocks.
    pub fn write(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                let now = Instant::now();
                let mut last = lock(&self.last_warning);
                if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    *last = Some(now);
                    tracing::warn!(
                        refused,
                        "the audit log cannot keep up (disk too slow); audit lines were not written"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("the audit log writer has stopped; an audit line was not written");
            }
        }
    }

    /// Lines refused so far because the queue was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl AuditWriter {
    /// Waits until every queued line is written: the queue closes when the last
    /// [`AuditLog`] is dropped; after a grace period the writer stops anyway once the
    /// queue is empty.
    pub fn finish(self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

fn write_lines(file: File, lines: &Receiver<Vec<u8>>, stopping: &AtomicBool) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut stop_deadline: Option<Instant> = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                put(&mut out, &line);
                // Everything already queued goes out in the same write.
                while let Ok(line) = lines.try_recv() {
                    put(&mut out, &line);
                }
                flush(&mut out);
                // A short nap lets the next lines gather: under load the writer then
                // never waits on the queue, so senders never have to wake it.
                std::thread::sleep(NAP);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if stopping.load(Ordering::Acquire) {
                    let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                    if Instant::now() >= deadline {
                        tracing::warn!("audit log closed while requests were still being decided");
                        break;
                    }
                }
            }
        }
    }
    flush(&mut out);
}

fn put(out: &mut BufWriter<File>, line: &[u8]) {
    if let Err(e) = out.write_all(line) {
        tracing::warn!(error = %e, "writing the audit log failed");
    }
}

fn flush(out: &mut BufWriter<File>) {
    if let Err(e) = out.flush() {
        tracing::warn!(error = %e, "writing the audit log failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queued_line_is_written_once_the_senders_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let file = File::create(&path).unwrap();
        let (log, writer) = AuditLog::spawn(file, QUEUE_LINES).unwrap();
        for i in 0..10_000 {
            log.write(format!("{{\"n\":{i}}}").into_bytes());
        }
        drop(log);
        writer.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert_eq!(lines[9_999], "{\"n\":9999}");
    }

    #[test]
    fn a_full_queue_is_counted_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("auth.log")).unwrap();
        let (queue, lines) = std::sync::mpsc::sync_channel(2);
        let log = AuditLog { queue, refused: AtomicU64::new(0), last_warning: Mutex::new(None) };
        for _ in 0..5 {
            log.write(b"{}".to_vec());
        }
        assert_eq!(log.refused(), 3);
        drop(log);
        write_lines(file, &lines, &AtomicBool::new(true));
        let text = std::fs::read_to_string(dir.path().join("auth.log")).unwrap();
        assert_eq!(text, "{}\n{}\n");
    }
}
