//! Streamed CSV (RFC 4180) and NDJSON exports of any list, and the opaque keyset cursor
//! every list pages with. An export walks the same keyset pages a screen shows, one page
//! of rows in memory at a time, with no row cap.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// Rows fetched per store call while exporting.
pub(crate) const EXPORT_PAGE: usize = 1_000;

/// A position in a list sorted newest first: the time of the last row shown and its
/// unique id (a row id, a session key, a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: i64,
    pub id: String,
}

/// Longest cursor accepted, in characters.
const MAX_CURSOR: usize = 1_024;

impl Cursor {
    /// The opaque form handed to clients: hex of `time:id`.
    pub fn encode(&self) -> String {
        let plain = format!("{}:{}", self.time, self.id);
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses what [`Cursor::encode`] made; anything else is `None`.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_CURSOR || text.len() % 2 != 0 {
            return None;
        }
        let bytes: Option<Vec<u8>> = text
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let plain = String::from_utf8(bytes?).ok()?;
        let (time, id) = plain.split_once(':')?;
        if !time.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return None;
        }
        Some(Self { time: time.parse().ok()?, id: id.to_string() })
    }
}

/// How a list is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Html,
    Json,
    Csv,
    Ndjson,
}

impl Format {
    pub(crate) fn is_export(self) -> bool {
        matches!(self, Self::Csv | Self::Ndjson)
    }
}

/// A row of a list, as columns of text for export.
pub(crate) trait ExportRow: Send + 'static {
    const COLUMNS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// One CSV field: a value whose first character after leading blanks is `= + - @`, or
/// that starts with a tab, line break or NUL, gets a `'` so a spreadsheet shows it as
/// text instead of running it (CWE-1236); then RFC 4180 quoting.
pub fn csv_field(value: &str) -> String {
    // Spreadsheets skip leading blanks before they look for a formula, so the first
    // character that is not one decides, and a value that starts with a control
    // character is neutralised whatever follows.
    let formula = match value.as_bytes().first() {
        Some(b'\t' | b'\r' | b'\n' | b'\0') => true,
        _ => matches!(value.trim_start().as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@')),
    };
    let neutral = if formula { format!("'{value}") } else { value.to_string() };
    if neutral.contains([',', '"', '\r', '\n']) || neutral.starts_with(' ') || neutral.ends_with(' ') {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

fn csv_line(out: &mut Vec<u8>, cells: impl IntoIterator<Item = impl AsRef<str>>) {
    let mut first = true;
    for c in cells {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(csv_field(c.as_ref()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn ndjson_line<R: ExportRow>(out: &mut Vec<u8>, row: &R) {
    let object: serde_json::Map<String, serde_json::Value> =
        R::COLUMNS.iter().zip(row.cells()).map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v))).collect();
    if serde_json::to_writer(&mut *out, &object).is_ok() {
        out.push(b'\n');
    }
}

/// A response body fed by a channel.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

/// One page of rows and where the next begins.
pub(crate) type Fetched<R> = Result<(Vec<R>, Option<Cursor>), String>;

/// Streams every row `fetch` gives, page after page until it returns no cursor, as CSV
/// or NDJSON. `fetch` runs on the blocking pool; at most a few pages wait in memory.
pub(crate) fn stream<R: ExportRow>(
    format: Format,
    name: &str,
    mut fetch: impl FnMut(Option<Cursor>) -> Fetched<R> + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if format == Format::Csv {
            csv_line(&mut out, R::COLUMNS);
        }
        let mut cursor = None;
        loop {
            let (rows, next) = match fetch(cursor) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "export stopped");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e)));
                    return;
                }
            };
            for row in &rows {
                match format {
                    Format::Ndjson => ndjson_line(&mut out, row),
                    _ => csv_line(&mut out, row.cells()),
                }
            }
            if !out.is_empty() && tx.blocking_send(Ok(Bytes::from(std::mem::take(&mut out)))).is_err() {
                return; // the client went away
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return,
            }
        }
    });
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        _ => ("text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!("attachment; filename=\"{name}.{extension}\"");
    let mut response = (StatusCode::OK, Body::new(ChannelBody(rx))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_fields_quoted() {
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@sum"), "'@sum");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field(" =1+1"), "' =1+1");
        assert_eq!(csv_field("\u{a0}\u{3000}@x"), "'\u{a0}\u{3000}@x");
        assert_eq!(csv_field("\nx"), "\"'\nx\"");
        assert_eq!(csv_field("a - b"), "a - b");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { time: -5, id: "nas:1:a:b".into() };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "zz", "0", "3a", "2d3a31", &"00".repeat(600), "e282ac3a31", "2b313a31"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
