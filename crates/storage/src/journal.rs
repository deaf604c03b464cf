//! The journal: an append-only log of every accepted packet, and the durable commit
//! point of ingestion. An Accounting-Response is sent only after its packet is in the
//! journal; everything else (sessions, counters, later profiles) is derived from it
//! and can be rebuilt from it.
//!
//! Layout: `<dir>/<segment number, 20 digits>.log`. Each record is framed as
//! `length (u32 LE) ‖ CRC-32 of payload (u32 LE) ‖ payload`. A torn record at the end
//! of the newest segment (a crash mid-write) is cut off when the journal is opened.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{FileMode, RawPacket, StorageError};

/// Segments roll over past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest payload accepted when reading; anything larger is corruption.
const MAX_PAYLOAD: u32 = 64 * 1024;
const FRAME_HEADER: usize = 8;

/// A place in the journal: the segment and the byte offset of the next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// Durability of journal appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalSync {
    /// `write(2)` only: survives a crash of the process.
    #[default]
    Process,
    /// `fdatasync` after every append batch: survives power loss.
    Fsync,
}

fn io_err(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::DataDir { path: path.display().to_string(), source }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.log"))
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The writing end. Exactly one per journal directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    position: Position,
    sync: JournalSync,
    mode: FileMode,
}

impl Journal {
    /// Opens the journal in `dir`, cutting off a torn tail of the newest segment.
    /// Segments are readable by their owner only.
    pub fn open(dir: &Path, sync: JournalSync) -> Result<Self, StorageError> {
        Self::open_with_mode(dir, sync, FileMode::PRIVATE)
    }

    /// The same with segments (new ones, and those kept from before) in this mode.
    pub fn open_with_mode(dir: &Path, sync: JournalSync, mode: FileMode) -> Result<Self, StorageError> {
        mode.create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let all = segments(dir)?;
        for &n in &all {
            let path = segment_path(dir, n);
            mode.restrict(&path).map_err(|e| io_err(&path, e))?;
        }
        let segment = all.last().copied().unwrap_or(1);
        let path = segment_path(dir, segment);
        let mut file = mode.open_append(&path).map_err(|e| io_err(&path, e))?;
        let valid = scan_valid_length(&mut file).map_err(|e| io_err(&path, e))?;
        let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        if valid < len {
            tracing::warn!(segment = %path.display(), cut = len - valid, "journal had a torn tail; cut it off");
            file.set_len(valid).map_err(|e| io_err(&path, e))?;
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        Ok(Self { dir: dir.to_path_buf(), file, position: Position { segment, offset: valid }, sync, mode })
    }

    /// Where the next record will go.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Appends records; returns once they are durable per the sync mode, with the
    /// position after the last one.
    pub fn append(&mut self, records: &[RawPacket]) -> Result<Position, StorageError> {
        if self.position.offset >= SEGMENT_BYTES {
            self.roll()?;
        }
        let buffer = encode_segment(records);
        let path = segment_path(&self.dir, self.position.segment);
        if let Err(e) = self.file.write_all(&buffer) {
            // Never leave half a batch behind: the next append must start on a frame.
            let _ = self.file.set_len(self.position.offset);
            return Err(io_err(&path, e));
        }
        if self.sync == JournalSync::Fsync {
            self.file.sync_data().map_err(|e| io_err(&path, e))?;
        }
        self.position.offset += buffer.len() as u64;
        Ok(self.position)
    }

    fn roll(&mut self) -> Result<(), StorageError> {
        let next = self.position.segment + 1;
        let path = segment_path(&self.dir, next);
        self.file = self.mode.open_append(&path).map_err(|e| io_err(&path, e))?;
        if self.sync == JournalSync::Fsync {
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io_err(&self.dir, e))?;
        }
        self.position = Position { segment: next, offset: 0 };
        Ok(())
    }
}

/// Deletes whole segments of the journal in `dir` last modified before `before` that
/// lie entirely before `applied` and are not the newest segment. Returns how many.
pub fn prune(dir: &Path, before: std::time::SystemTime, applied: Position) -> Result<usize, StorageError> {
    let all = segments(dir)?;
    let newest = all.last().copied().unwrap_or(0);
    let mut removed = 0;
    for n in all {
        if n >= applied.segment || n >= newest {
            break;
        }
        let path = segment_path(dir, n);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(|e| io_err(&path, e))?;
        if modified < before {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Reads records in order from any position. Stops cleanly at the end of the data
/// written so far (including an incomplete record still being written).
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
}

impl JournalReader {
    /// A reader of the journal in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// Up to `max` records after `from`, each with the position after it, and the
    /// position to continue from.
    pub fn read(&self, from: Position, max: usize) -> Result<(Vec<(Position, RawPacket)>, Position), StorageError> {
        let mut out = Vec::new();
        let mut pos = from;
        let all = segments(&self.dir)?;
        // Start at the first segment that exists at or after `from` (older ones may
        // have been pruned).
        if let Some(first) = all.iter().copied().find(|&s| s >= pos.segment) {
            if first != pos.segment {
                pos = Position { segment: first, offset: 0 };
            }
        } else {
            return Ok((out, pos));
        }
        while out.len() < max {
            let path = segment_path(&self.dir, pos.segment);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_err(&path, e)),
            };
            let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
            file.seek(SeekFrom::Start(pos.offset)).map_err(|e| io_err(&path, e))?;
            let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
            let mut ended_cleanly = true;
            while out.len() < max && pos.offset < len {
                match read_frame(&mut reader, len - pos.offset) {
                    Ok(Some((payload, size))) => {
                        pos.offset += size;
                        match decode_payload(&payload) {
                            Some(r) => out.push((pos, r)),
                            None => {
                                tracing::error!(segment = %path.display(), offset = pos.offset, "undecodable journal record skipped")
                            }
                        }
                    }
                    Ok(None) => {
                        ended_cleanly = false;
                        break;
                    }
                    Err(e) => return Err(io_err(&path, e)),
                }
            }
            if out.len() >= max {
                break;
            }
            // At the end of this segment: move on only if a newer segment exists.
            let next = segments(&self.dir)?.into_iter().find(|&s| s > pos.segment);
            match next {
                Some(n) if ended_cleanly || pos.offset >= len => pos = Position { segment: n, offset: 0 },
                Some(n) => {
                    tracing::error!(segment = %path.display(), offset = pos.offset, "corrupt journal record; skipping to the next segment");
                    pos = Position { segment: n, offset: 0 };
                }
                None => break,
            }
        }
        Ok((out, pos))
    }

    /// Bytes of the journal after `applied`: what the store has yet to apply (0 once
    /// it has caught up).
    pub fn pending(&self, applied: Position) -> Result<u64, StorageError> {
        let mut total = 0;
        for n in segments(&self.dir)? {
            if n < applied.segment {
                continue;
            }
            let path = segment_path(&self.dir, n);
            let len = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?.len();
            total += if n == applied.segment { len.saturating_sub(applied.offset) } else { len };
        }
        Ok(total)
    }

    /// Total bytes in all segments.
    pub fn size(&self) -> Result<u64, StorageError> {
        self.pending(Position::default())
    }

    /// Arrival time of the oldest record kept (Unix milliseconds), if any.
    pub fn oldest_ms(&self) -> Result<Option<i64>, StorageError> {
        let Some(&first) = segments(&self.dir)?.first() else { return Ok(None) };
        let (rows, _) = self.read(Position { segment: first, offset: 0 }, 1)?;
        Ok(rows.first().map(|(_, raw)| raw.received_ms))
    }
}

/// Reads one frame; `None` when the rest is incomplete or fails its checksum.
fn read_frame(r: &mut impl Read, available: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    if available < FRAME_HEADER as u64 {
        return Ok(None);
    }
    let mut header = [0u8; FRAME_HEADER];
    r.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD || u64::from(len) + FRAME_HEADER as u64 > available {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if crc32(&payload) != crc {
        return Ok(None);
    }
    Ok(Some((payload, u64::from(len) + FRAME_HEADER as u64)))
}

/// Decodes the records of a whole segment image; returns them and the length of the
/// valid prefix. (The reader streams files; this is the same parser over a slice.)
pub fn decode_segment(bytes: &[u8]) -> (Vec<RawPacket>, u64) {
    let mut cursor = std::io::Cursor::new(bytes);
    let mut out = Vec::new();
    let mut valid = 0u64;
    let len = bytes.len() as u64;
    while valid < len {
        match read_frame(&mut cursor, len - valid) {
            Ok(Some((payload, size))) => {
                valid += size;
                if let Some(r) = decode_payload(&payload) {
                    out.push(r);
                }
            }
            _ => break,
        }
    }
    (out, valid)
}

/// Encodes records exactly as [`Journal::append`] writes them.
pub fn encode_segment(records: &[RawPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        encode_payload(r, &mut out);
        let payload_len = (out.len() - start - FRAME_HEADER) as u32;
        let crc = crc32(&out[start + FRAME_HEADER..]);
        out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Length of the valid prefix of a segment.
fn scan_valid_length(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, &mut *file);
    let mut valid = 0u64;
    while valid < len {
        match read_frame(&mut reader, len - valid)? {
            Some((_, size)) => valid += size,
            None => break,
        }
    }
    Ok(valid)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&b[..usize::from(len)]);
}

fn encode_payload(r: &RawPacket, out: &mut Vec<u8>) {
    out.push(1); // payload version
    out.extend_from_slice(&r.received_ms.to_le_bytes());
    put_bytes(out, r.client.as_bytes());
    put_bytes(out, r.vendor.as_bytes());
    put_bytes(out, r.source.as_bytes());
    put_bytes(out, &r.packet);
}

fn decode_payload(p: &[u8]) -> Option<RawPacket> {
    let (&version, rest) = p.split_first()?;
    if version != 1 {
        return None;
    }
    let (ms, mut rest) = rest.split_first_chunk::<8>()?;
    let mut take = || -> Option<Vec<u8>> {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let (value, tail) = tail.split_at_checked(len)?;
        rest = tail;
        Some(value.to_vec())
    };
    let client = String::from_utf8(take()?).ok()?;
    let vendor = String::from_utf8(take()?).ok()?;
    let source = String::from_utf8(take()?).ok()?;
    let packet = take()?;
    Some(RawPacket { received_ms: i64::from_le_bytes(*ms), client, vendor, source, packet })
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: i64) -> RawPacket {
        RawPacket {
            received_ms: n,
            client: "c".into(),
            vendor: "generic".into(),
            source: "127.0.0.1:1".into(),
            packet: vec![n as u8; 40],
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn append_read_and_resume() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), JournalSync::Process).unwrap();
        let end = j.append(&[raw(1), raw(2), raw(3)]).unwrap();
        let r = JournalReader::new(d.path());
        let (got, pos) = r.read(Position::default(), 2).unwrap();
        assert_eq!(got.iter().map(|g| g.1.received_ms).collect::<Vec<_>>(), vec![1, 2]);
        let (rest, pos2) = r.read(pos, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(pos2, end);
        assert_eq!(rest[0].0, end);
        drop(j);
        let mut j = Journal::open(d.path(), JournalSync::Fsync).unwrap();
        assert_eq!(j.position(), end);
        j.append(&[raw(4)]).unwrap();
        assert_eq!(r.read(pos2, 10).unwrap().0[0].1, raw(4));
    }

    #[test]
    fn torn_tail_is_cut_and_reader_stops_before_it() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), JournalSync::Process).unwrap();
        let end = j.append(&[raw(1)]).unwrap();
        drop(j);
        let path = segment_path(d.path(), 1);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (got, pos) = JournalReader::new(d.path()).read(Position::default(), 10).unwrap();
        assert_eq!((got.len(), pos), (1, end));
        let j = Journal::open(d.path(), JournalSync::Process).unwrap();
        assert_eq!(j.position(), end);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end.offset);
    }

    #[test]
    fn corrupt_checksum_is_not_returned() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), JournalSync::Process).unwrap();
        j.append(&[raw(1), raw(2)]).unwrap();
        drop(j);
        let path = segment_path(d.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (got, _) = JournalReader::new(d.path()).read(Position::default(), 10).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn reader_crosses_segments_and_skips_pruned_ones() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), JournalSync::Process).unwrap();
        j.append(&[raw(1)]).unwrap();
        j.roll().unwrap();
        j.append(&[raw(2)]).unwrap();
        j.roll().unwrap();
        j.append(&[raw(3)]).unwrap();
        let r = JournalReader::new(d.path());
        let (got, end) = r.read(Position::default(), 10).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(r.pending(end).unwrap(), 0);
        assert_eq!(r.pending(Position::default()).unwrap(), r.size().unwrap());
        assert_eq!(r.pending(got[1].0).unwrap(), end.offset);
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(prune(d.path(), future, Position { segment: 3, offset: 0 }).unwrap(), 2);
        let (got, _) = r.read(Position::default(), 10).unwrap();
        assert_eq!(got.iter().map(|g| g.1.received_ms).collect::<Vec<_>>(), vec![3]);
    }
}
