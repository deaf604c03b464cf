//! The `[http]` listener cannot be held open: idle and half-sent connections beyond
//! the cap make room for new ones, time out and are closed; oversized bodies and
//! headers are refused; when every slot has a request in progress a new connection is
//! closed at once; and a login waiting for a push is not admitted while a flood of
//! connections is on, even with `fail_mode = "safe"`. Over TLS, connections that never
//! finish their handshake are closed by the header timeout and make room for others,
//! and every answer carries HSTS.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, last_event, python};

fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Plain HTTP on loopback (the bounds are the same over TLS), so requests are bytes.
fn limits(port: u16, max_connections: usize) -> String {
    format!("{}tls = false\n", tls_limits(port, max_connections))
}

fn tls_limits(port: u16, max_connections: usize) -> String {
    format!(
        "[http]\nlisten = [\"127.0.0.1:{port}\"]\nmax_connections = {max_connections}\nheader_timeout_seconds = 2\n\
         idle_timeout_seconds = 1\nrequest_timeout_seconds = 2\n"
    )
}

#[test]
fn tls_handshakes_that_never_finish_cannot_hold_the_listener() {
    common::require("curl");
    let port = tcp_port();
    let s = Server::start(&tls_limits(port, 4));
    let ca = s.dir.path().join("data/http-tls/cert.pem");
    let https_health = || {
        let started = Instant::now();
        let out = std::process::Command::new("curl")
            .args(["-si", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{port}/health"))
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer:?}\n{}", s.log());
        assert!(answer.contains("strict-transport-security: max-age=31536000\r\n"), "HSTS on every answer: {answer}");
        started.elapsed()
    };
    https_health();
    // Connections that send no ClientHello, and one that sends half of one.
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..10).map(|_| connect(port)).collect();
    let mut half = connect(port);
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let took = https_health();
    assert!(took < Duration::from_secs(2), "/health took {took:?} with the listener full of handshakes");
    let deadline = started + Duration::from_secs(6);
    for c in silent.iter().chain([&half]) {
        if let Some((at, _)) = closed_by(c, deadline) {
            assert!(at - started < Duration::from_secs(4), "closed after {:?}", at - started);
        } else {
            panic!("a handshake that never finished was still open after 6 s");
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `request` on a new connection and returns the answer (read until the server
/// closes or 3 s pass).
fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// `/health` from a new connection; how long the answer took.
fn health(port: u16) -> Duration {
    let started = Instant::now();
    let answer = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer:?}");
    started.elapsed()
}

/// Waits until the server closes `s` (end of stream or reset); when, or `None` if it
/// was still open at `deadline`. Bytes it sends are returned too.
fn closed_by(s: &TcpStream, deadline: Instant) -> Option<(Instant, Vec<u8>)> {
    let mut s = s.try_clone().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((Instant::now(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some((Instant::now(), got)),
        }
    }
    None
}

#[test]
fn idle_and_half_sent_connections_cannot_hold_the_listener() {
    let port = tcp_port();
    let s = Server::start(&limits(port, 16));
    health(port);

    // Far more idle connections than the cap, then slowloris: headers a line at a time.
    let idle: Vec<TcpStream> = (0..40).map(|_| connect(port)).collect();
    let slow_started = Instant::now();
    let slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = connect(port);
            c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").unwrap();
            c
        })
        .collect();
    let trickling = Arc::new(AtomicBool::new(true));
    let trickle = {
        let (writers, trickling) = (slow.iter().map(|c| c.try_clone().unwrap()).collect::<Vec<_>>(), trickling.clone());
        std::thread::spawn(move || {
            let mut writers = writers;
            while trickling.load(Ordering::Relaxed) {
                for w in &mut writers {
                    let _ = w.write_all(b"X-Slow: y\r\n");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    let took = health(port);
    assert!(took < Duration::from_secs(1), "/health took {took:?} with the listener full");

    // Half-sent headers, though still moving: closed by the 2 s header timeout (watched
    // from threads of their own, to see when).
    let deadline = slow_started + Duration::from_secs(6);
    let watchers: Vec<_> = slow
        .iter()
        .map(|c| {
            let c = c.try_clone().unwrap();
            std::thread::spawn(move || closed_by(&c, deadline))
        })
        .collect();
    // Idle connections: made room for others, or closed after the 1 s idle timeout.
    let deadline = Instant::now() + Duration::from_secs(4);
    for (i, c) in idle.iter().enumerate() {
        assert!(closed_by(c, deadline).is_some(), "idle connection {i} is still open\n{}", s.log());
    }
    for (i, w) in watchers.into_iter().enumerate() {
        let (at, _) = w.join().unwrap().unwrap_or_else(|| panic!("slowloris {i} is still open\n{}", s.log()));
        assert!(
            at - slow_started >= Duration::from_millis(1500),
            "slowloris {i} closed after {:?}, before its header timeout\n{}",
            at - slow_started,
            s.log()
        );
    }
    trickling.store(false, Ordering::Relaxed);
    trickle.join().unwrap();
    assert!(health(port) < Duration::from_secs(1));
    assert!(s.log().contains("HTTP listener full"), "{}", s.log());
}

#[test]
fn oversized_requests_are_refused_and_busy_slots_close_new_connections_at_once() {
    let port = tcp_port();
    let s = Server::start(&limits(port, 4));

    // A declared 1 MiB body is refused before it is read.
    let mut big = b"POST /mfa/push/x/approve?sig=y HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let answer = exchange(port, &big);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // An undeclared one (chunked) is cut off at 64 KiB by the handler reading it.
    let mut c = connect(port);
    c.write_all(b"POST /mfa/push/x/approve?sig=y HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let mut writer = c.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
        for _ in 0..64 {
            if writer.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
    });
    let (_, got) = closed_by(&c, Instant::now() + Duration::from_secs(5)).expect("the chunked upload was not cut off");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 413"), "{:?}", String::from_utf8_lossy(&got));
    sender.join().unwrap();
    // Too many header fields, and too many header bytes.
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let answer = exchange(port, format!("GET /health HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let long = "v".repeat(20 * 1024);
    let answer = exchange(port, format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Long: {long}\r\n\r\n").as_bytes());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Four requests in progress (bodies that never finish) fill every slot.
    let busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(port);
            c.write_all(b"POST /mfa/push/x/approve?sig=y HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nnumber=1")
                .unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let refused = connect(port);
    let (at, got) = closed_by(&refused, started + Duration::from_secs(1)).expect("a fifth connection was kept open");
    assert!(got.is_empty() && at - started < Duration::from_millis(500), "{got:?} after {:?}", at - started);
    // The request timeout (2 s) answers them 408 and frees the slots.
    for (i, c) in busy.iter().enumerate() {
        let (_, got) = closed_by(c, started + Duration::from_secs(5)).unwrap_or_else(|| panic!("busy {i} still open"));
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&got));
    }
    assert!(health(port) < Duration::from_secs(1));
    assert!(s.log().contains("every connection has a request in progress"), "{}", s.log());
}

/// A webhook receiver that accepts every notification and approves nothing.
fn silent_notifier() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the declared body.
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, count)
}

#[test]
fn a_push_login_is_not_admitted_while_connections_flood_the_listener() {
    let shared = tempfile::tempdir().unwrap();
    let (notifier, notified) = silent_notifier();
    let port = tcp_port();
    let config = format!(
        "{}\n[mfa]\nstate_key_file = \"{dir}/mfa.key\"\ndatabase = \"{dir}/mfa.db\"\nfail_mode = \"safe\"\n\n\
         [mfa.push]\nwebhook_url = \"http://127.0.0.1:{notifier}/notify\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
         wait_seconds = 3\n\n[[network_policy]]\nname = \"staff\"\ngroups = [\"vpn\"]\n",
        limits(port, 16),
        dir = shared.path().display()
    );
    let s = Server::start(&config);
    add_user(&s, "alice", "wonderland", &["vpn"], &[]);
    assert!(s.cli(&["mfa", "enroll", "alice", "--format", "json"]).status.success());
    assert!(s.cli(&["mfa", "enroll-push", "alice"]).status.success());

    // Keep a few hundred connections open, opening new ones as old ones are closed.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let flooding = Arc::clone(&flooding);
        std::thread::spawn(move || {
            let mut open = std::collections::VecDeque::new();
            while flooding.load(Ordering::Relaxed) {
                if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = (&c).write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n");
                    open.push_back(c);
                }
                if open.len() > 300 {
                    open.pop_front();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let took = health(port);
    assert!(took < Duration::from_secs(1), "/health took {took:?} during the flood");

    let out = std::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(["mschapv2", "alice", "wonderland"])
        .env("PYRAD_TIMEOUT", "8")
        .env("PYRAD_RETRIES", "1")
        .output()
        .unwrap();
    flooding.store(false, Ordering::Relaxed);
    flood.join().unwrap();
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(reply["code"], "reject", "{reply}\n{}", s.log());
    let e = last_event(&s, "alice");
    assert_eq!((e["decision"].as_str(), e["mfa"].as_str()), (Some("reject"), Some("push_timeout")), "{e}");
    assert_eq!(notified.load(Ordering::SeqCst), 1, "the notification went out during the flood");
    assert!(s.log().contains("HTTP listener full"), "{}", s.log());
}
