//! The audit log file (`<data_dir>/auth.log`): one JSON line per decision, written by a
//! dedicated thread so the I/O tasks never wait on the disk.
//!
//! Lines go through a bounded queue; the writer takes everything queued, writes it in
//! one `write` and flushes whenever the queue runs dry, then naps for 2 ms. A full queue is counted and
//! reported (at most one warning every ten seconds), never waited on. A clean shutdown
//! writes every line queued before it.
//!
//! The writer rotates the file itself (by size, daily at midnight UTC, keeping
//! `auth.log.1` … `auth.log.<keep>`), and reopens it when asked (SIGHUP) or when the
//! file at the path is no longer the one it writes (moved away by logrotate), checked
//! once a second. Lines are never split across files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
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
/// How often the writer checks whether the file was moved away.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// When `auth.log` is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate at this size (0: never by size).
    pub max_bytes: u64,
    /// Rotate when the UTC date changes.
    pub daily: bool,
    /// Rotated files kept.
    pub keep: usize,
}

impl Rotation {
    /// The `[log]` settings.
    pub fn of(log: &crate::config::LogConfig) -> Self {
        Self { max_bytes: log.auth_log_max_bytes, daily: log.auth_log_daily, keep: log.auth_log_keep }
    }
}

/// What the senders tell the writer besides lines.
#[derive(Debug)]
struct Control {
    reopen: AtomicBool,
    rotation: Mutex<Rotation>,
    /// The mode new files are created with (0600, or 0640 with `storage.group_readable`).
    mode: portcullis_storage::FileMode,
}

/// The sending side, shared by every authentication task.
#[derive(Debug)]
pub struct AuditLog {
    queue: SyncSender<Vec<u8>>,
    /// Lines refused because the queue was full.
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
    control: Arc<Control>,
}

/// The writer thread; [`AuditWriter::finish`] drains it.
#[derive(Debug)]
pub struct AuditWriter {
    thread: JoinHandle<()>,
    stopping: Arc<AtomicBool>,
}

impl AuditLog {
    /// Opens (creating with `mode`) `path` and starts the writer thread appending to it.
    pub fn spawn(
        path: PathBuf,
        rotation: Rotation,
        mode: portcullis_storage::FileMode,
        capacity: usize,
    ) -> std::io::Result<(Self, AuditWriter)> {
        let file = mode.open_append(&path)?;
        let (queue, lines) = std::sync::mpsc::sync_channel(capacity);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let control = Arc::new(Control { reopen: AtomicBool::new(false), rotation: Mutex::new(rotation), mode });
        let output = Output::new(path, file, Arc::clone(&control));
        let thread =
            std::thread::Builder::new().name("audit".into()).spawn(move || write_lines(output, &lines, &stop))?;
        Ok((
            Self { queue, refused: AtomicU64::new(0), last_warning: Mutex::new(None), control },
            AuditWriter { thread, stopping },
        ))
    }

    /// Asks the writer to close and reopen the file (after it was moved away).
    pub fn reopen(&self) {
        self.control.reopen.store(true, Ordering::Release);
    }

    /// New rotation settings (a reload).
    pub fn set_rotation(&self, rotation: Rotation) {
        *lock(&self.control.rotation) = rotation;
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

fn write_lines(mut output: Output, lines: &Receiver<Vec<u8>>, stopping: &AtomicBool) {
    let mut stop_deadline: Option<Instant> = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                output.put(&line);
                // Everything already queued goes out in the same write.
                while let Ok(line) = lines.try_recv() {
                    output.put(&line);
                }
                output.flush();
                output.maintain();
                // A short nap lets the next lines gather: under load the writer then
                // never waits on the queue, so senders never have to wake it.
                std::thread::sleep(NAP);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                output.maintain();
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
    output.flush();
}

/// The identity of a file (device and inode), to notice it was replaced.
pub(crate) fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// The file being written, with what rotation needs to know about it.
struct Output {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file (as far as this writer knows).
    size: u64,
    /// The UTC day the file was opened on.
    day: i64,
    file_id: Option<(u64, u64)>,
    last_check: Instant,
    control: Arc<Control>,
}

impl Output {
    fn new(path: PathBuf, file: File, control: Arc<Control>) -> Self {
        let meta = file.metadata().ok();
        Self {
            path,
            size: meta.as_ref().map_or(0, std::fs::Metadata::len),
            file_id: meta.as_ref().map(identity),
            out: BufWriter::with_capacity(256 * 1024, file),
            day: crate::now_unix().div_euclid(86_400),
            last_check: Instant::now(),
            control,
        }
    }

    fn put(&mut self, line: &[u8]) {
        match self.out.write_all(line) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => tracing::warn!(error = %e, "writing the audit log failed"),
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }

    /// Rotates or reopens the file when it is time to (called between writes, after a
    /// flush).
    fn maintain(&mut self) {
        let rotation = *lock(&self.control.rotation);
        let today = crate::now_unix().div_euclid(86_400);
        if rotation.daily && today != self.day && self.size == 0 {
            self.day = today;
        }
        if (rotation.max_bytes > 0 && self.size >= rotation.max_bytes) || (rotation.daily && today != self.day) {
            self.rotate(rotation.keep);
            return;
        }
        if self.control.reopen.swap(false, Ordering::AcqRel) {
            self.reopen("reopened on request");
            return;
        }
        if self.last_check.elapsed() >= CHECK_EVERY {
            self.last_check = Instant::now();
            let current = std::fs::metadata(&self.path).ok().map(|m| identity(&m));
            if current != self.file_id {
                self.reopen("the file was moved away or replaced; reopened");
            }
        }
    }

    /// Renames `auth.log.N` to `auth.log.N+1` (dropping the last), the file to
    /// `auth.log.1`, and starts a new one.
    fn rotate(&mut self, keep: usize) {
        self.flush();
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let result = if keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    if let Err(e) = std::fs::rename(&from, numbered(n + 1)) {
                        tracing::warn!(error = %e, path = %from.display(), "rotating the audit log failed");
                    }
                }
            }
            std::fs::rename(&self.path, numbered(1))
        };
        match result {
            Ok(()) => self.reopen("rotated"),
            // Keep writing where we are rather than lose lines; try again later.
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "rotating the audit log failed");
                self.day = crate::now_unix().div_euclid(86_400);
                self.size = 0;
            }
        }
    }

    fn reopen(&mut self, why: &str) {
        self.flush();
        match self.control.mode.open_append(&self.path) {
            Ok(file) => {
                let control = Arc::clone(&self.control);
                *self = Self::new(self.path.clone(), file, control);
                tracing::info!(path = %self.path.display(), "audit log {why}");
            }
            Err(e) => tracing::warn!(error = %e, path = %self.path.display(), "reopening the audit log failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queued_line_is_written_once_the_senders_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let (log, writer) =
            AuditLog::spawn(path.clone(), ROTATION_OFF, portcullis_storage::FileMode::default(), QUEUE_LINES).unwrap();
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

    const ROTATION_OFF: Rotation = Rotation { max_bytes: 0, daily: false, keep: 3 };

    #[test]
    fn a_full_queue_is_counted_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let file = File::create(&path).unwrap();
        let (queue, lines) = std::sync::mpsc::sync_channel(2);
        let control = Arc::new(Control {
            reopen: AtomicBool::new(false),
            rotation: Mutex::new(ROTATION_OFF),
            mode: portcullis_storage::FileMode::default(),
        });
        let log = AuditLog {
            queue,
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
            control: Arc::clone(&control),
        };
        for _ in 0..5 {
            log.write(b"{}".to_vec());
        }
        assert_eq!(log.refused(), 3);
        drop(log);
        write_lines(Output::new(path, file, control), &lines, &AtomicBool::new(true));
        let text = std::fs::read_to_string(dir.path().join("auth.log")).unwrap();
        assert_eq!(text, "{}\n{}\n");
    }

    #[test]
    fn size_rotation_keeps_whole_lines_and_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let rotation = Rotation { max_bytes: 1000, daily: false, keep: 2 };
        let (log, writer) =
            AuditLog::spawn(path, rotation, portcullis_storage::FileMode::default(), QUEUE_LINES).unwrap();
        for i in 0..400 {
            log.write(format!("{{\"n\":{i:05}}}").into_bytes());
            // Let the writer see the size between batches.
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        drop(log);
        writer.finish();
        let names: Vec<_> =
            ["auth.log", "auth.log.1", "auth.log.2", "auth.log.3"].iter().map(|n| dir.path().join(n)).collect();
        assert!(names[1].exists() && names[2].exists(), "rotated files are kept");
        assert!(!names[3].exists(), "no more than `keep` rotated files");
        // Oldest first, the kept lines are one unbroken run ending with the last line.
        let text: String = names[..3].iter().rev().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        let numbers: Vec<u32> = text
            .lines()
            .map(|l| l.strip_prefix("{\"n\":").and_then(|l| l.strip_suffix('}')).unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers.last(), Some(&399), "{text}");
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "whole lines, in order, none lost: {text}");
    }
}
