//! Closed-loop load generator. It sends only to loopback, keeps a bounded window of
//! requests in flight, verifies every Response Authenticator, retransmits what times
//! out, and prints throughput and latency percentiles as JSON.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use portcullis_radius::{
    Authenticator, Code, Identifier, Packet, PacketBuilder, SharedSecret, attr, hide_user_password,
    verify_response_authenticator,
};
use rand::RngCore;
use serde_json::json;
use tokio::net::UdpSocket;

use crate::cli::{BenchArgs, BenchMode};

#[derive(Default)]
struct Tally {
    completed: u64,
    lost: u64,
    retransmits: u64,
    bad_responses: u64,
    rejected: u64,
    latencies_us: Vec<u32>,
    acked: Vec<String>,
}

struct InFlight {
    bytes: Vec<u8>,
    authenticator: Authenticator,
    first_sent: Instant,
    last_sent: Instant,
    tries: u32,
    label: String,
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    if !args.target.ip().is_loopback() {
        bail!("the load generator only sends to loopback addresses, not {}", args.target);
    }
    if args.window == 0 || args.requests == 0 {
        bail!("--window and --requests must be positive");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let tally = runtime.block_on(drive(args))?;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(path) = &args.ack_log {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).context("creating the ack log")?);
        for line in &tally.acked {
            writeln!(f, "{line}")?;
        }
        f.flush()?;
    }
    let mut lat = tally.latencies_us.clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lat[i.min(lat.len() - 1)]) / 1000.0
    };
    let report = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "target": args.target.to_string(),
        "window": args.window,
        "rate_target": args.rate,
        "requests": args.requests,
        "completed": tally.completed,
        "lost": tally.lost,
        "retransmits": tally.retransmits,
        "bad_responses": tally.bad_responses,
        "rejected": tally.rejected,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "rps": if elapsed > 0.0 { (tally.completed as f64 / elapsed).round() } else { 0.0 },
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": pct(1.0),
        }
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn drive(args: &BenchArgs) -> Result<Tally> {
    let sockets = args.window.div_ceil(256).max(1);
    let per_socket_window = args.window.div_ceil(sockets);
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("{:08x}", rand::thread_rng().next_u32()));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let next = Rc::new(RefCell::new(0u64));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let local = tokio::task::LocalSet::new();
    for _ in 0..sockets {
        let bind: SocketAddr = if args.target.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse()?;
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(args.target).await?;
        let args = args.clone();
        let tally = Rc::clone(&tally);
        let next = Rc::clone(&next);
        let run_id = run_id.clone();
        local.spawn_local(async move {
            if let Err(e) =
                socket_loop(socket, &args, per_socket_window, &run_id, &next, &tally, deadline, started).await
            {
                eprintln!("load generator socket failed: {e}");
            }
        });
    }
    local.await;
    Ok(Rc::try_unwrap(tally).map(RefCell::into_inner).unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
async fn socket_loop(
    socket: UdpSocket,
    args: &BenchArgs,
    window: usize,
    run_id: &str,
    next: &RefCell<u64>,
    tally: &RefCell<Tally>,
    deadline: Instant,
    started: Instant,
) -> Result<()> {
    let secret = SharedSecret::new(args.secret.as_bytes().to_vec());
    let timeout = Duration::from_secs_f64(args.timeout.max(0.01));
    let mut inflight: HashMap<u8, InFlight> = HashMap::with_capacity(window);
    let mut next_id: u8 = 0;
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        // Fill the window.
        while inflight.len() < window && Instant::now() < deadline {
            let n = {
                let mut next = next.borrow_mut();
                if *next >= args.requests {
                    break;
                }
                if args.rate > 0 {
                    let due = started + Duration::from_secs_f64(*next as f64 / args.rate as f64);
                    if Instant::now() < due {
                        break;
                    }
                }
                *next += 1;
                *next - 1
            };
            while inflight.contains_key(&next_id) {
                next_id = next_id.wrapping_add(1);
            }
            let id = next_id;
            next_id = next_id.wrapping_add(1);
            let (bytes, label) = build(args, n, id, run_id, &secret)?;
            let authenticator = Packet::decode(&bytes).map(|p| p.authenticator()).unwrap_or(Authenticator::ZERO);
            let now = Instant::now();
            // A refused send (ICMP from a stopped server) is retried like a lost one.
            let _ = socket.send(&bytes).await;
            inflight.insert(id, InFlight { bytes, authenticator, first_sent: now, last_sent: now, tries: 0, label });
        }
        let exhausted = *next.borrow() >= args.requests || Instant::now() >= deadline;
        if inflight.is_empty() && exhausted {
            return Ok(());
        }
        if Instant::now() >= deadline + timeout * (args.retries + 1) {
            tally.borrow_mut().lost += inflight.len() as u64;
            return Ok(());
        }
        // When pacing, wake exactly when the next request is due instead of on the tick,
        // so the offered load is smooth rather than bursty.
        let next_due = {
            let n = *next.borrow();
            (args.rate > 0 && n < args.requests && inflight.len() < window)
                .then(|| started + Duration::from_secs_f64(n as f64 / args.rate as f64))
        };
        let pace = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = pace => {}
            r = socket.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                let Ok(p) = Packet::decode(&buf[..n]) else {
                    tally.borrow_mut().bad_responses += 1;
                    continue;
                };
                let id = p.identifier().0;
                let Some(req) = inflight.get(&id) else { continue };
                if verify_response_authenticator(&p, &req.authenticator, &secret).is_err() {
                    tally.borrow_mut().bad_responses += 1;
                    continue;
                }
                let Some(req) = inflight.remove(&id) else { continue };
                let mut t = tally.borrow_mut();
                t.completed += 1;
                if p.code() == Code::AccessReject {
                    t.rejected += 1;
                }
                let us = req.first_sent.elapsed().as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                if args.ack_log.is_some() {
                    t.acked.push(req.label);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let mut lost = Vec::new();
                for (id, req) in inflight.iter_mut() {
                    if now.duration_since(req.last_sent) >= timeout {
                        if req.tries >= args.retries {
                            lost.push(*id);
                        } else {
                            req.tries += 1;
                            req.last_sent = now;
                            tally.borrow_mut().retransmits += 1;
                            let _ = socket.send(&req.bytes).await;
                        }
                    }
                }
                for id in lost {
                    inflight.remove(&id);
                    tally.borrow_mut().lost += 1;
                }
            }
        }
    }
}

fn build(args: &BenchArgs, n: u64, id: u8, run_id: &str, secret: &SharedSecret) -> Result<(Vec<u8>, String)> {
    let mode = args.mode;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as u32;
    if mode == BenchMode::Pap {
        let mut auth = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut auth);
        let authenticator = Authenticator(auth);
        let mut b = PacketBuilder::new(Code::AccessRequest, Identifier(id));
        b.message_authenticator();
        b.attribute(attr::USER_NAME, args.user.as_bytes())?;
        b.attribute(attr::USER_PASSWORD, &hide_user_password(args.password.as_bytes(), secret, &authenticator)?)?;
        b.attribute(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1])?;
        b.attribute(attr::NAS_PORT, &(n as u32).to_be_bytes())?;
        b.attribute(attr::CALLING_STATION_ID, format!("198.51.100.{}", n % 250 + 1).as_bytes())?;
        return Ok((b.encode_with_authenticator(authenticator, secret)?, format!("pap {n}")));
    }
    let mut b = match mode {
        BenchMode::Status => PacketBuilder::new(Code::StatusServer, Identifier(id)),
        _ => PacketBuilder::new(Code::AccountingRequest, Identifier(id)),
    };
    if mode == BenchMode::Status {
        b.message_authenticator();
        let mut auth = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut auth);
        return Ok((b.encode_with_authenticator(Authenticator(auth), secret)?, format!("status {n}")));
    }
    // Acct: Start/Stop pairs; AcctStart: Starts only. Twelve attributes in a Stop.
    let (status, session) = match mode {
        BenchMode::Acct => (if n % 2 == 0 { 1u32 } else { 2 }, n / 2),
        _ => (1, n),
    };
    let session_id = format!("{run_id}-{session}");
    let user = format!("load{}", session % 1000);
    let octet = (session % 250) as u8 + 1;
    b.attribute(attr::ACCT_STATUS_TYPE, &status.to_be_bytes())?;
    b.attribute(attr::USER_NAME, user.as_bytes())?;
    b.attribute(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1])?;
    b.attribute(attr::NAS_PORT, &(session as u32).to_be_bytes())?;
    b.attribute(attr::ACCT_SESSION_ID, session_id.as_bytes())?;
    b.attribute(attr::FRAMED_IP_ADDRESS, &[10, 8, (session / 250 % 250) as u8, octet])?;
    b.attribute(attr::CALLING_STATION_ID, format!("203.0.113.{octet}").as_bytes())?;
    b.attribute(attr::EVENT_TIMESTAMP, &now.to_be_bytes())?;
    b.attribute(attr::NAS_PORT_TYPE, &5u32.to_be_bytes())?;
    if status == 2 {
        b.attribute(attr::ACCT_SESSION_TIME, &3600u32.to_be_bytes())?;
        b.attribute(attr::ACCT_INPUT_OCTETS, &123_456u32.to_be_bytes())?;
        b.attribute(attr::ACCT_OUTPUT_OCTETS, &654_321u32.to_be_bytes())?;
        b.attribute(attr::ACCT_TERMINATE_CAUSE, &1u32.to_be_bytes())?;
    }
    let label = format!("{} {session_id}", if status == 1 { "start" } else { "stop" });
    Ok((b.encode_computed_request(secret)?, label))
}
