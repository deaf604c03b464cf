//! The portal and `/api/v1` on the real binary over HTTPS (curl trusting only the
//! server's self-signed certificate), with history replayed from JSON lines and hostile
//! user names sent by radclient: the role × route matrix, cross-site state changes
//! refused, hostile names inert in HTML, JSON and CSV, an uncapped export, the sign-in
//! rate limit, the certificate made once and reused, and the `__Host-` cookie.

mod common;

use std::path::Path;
use std::process::Command;

use common::{SECRET, Server, free_port, radclient, require};

const HOSTILE_SCRIPT: &str = "<script>alert(1)</script>";
const TIMELINE_ROWS: usize = 20_000;
const PASSWORD: &str = "portal-password-1";

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// Where the portal is: its base URL and the certificate curl trusts (the only one).
struct Site {
    url: String,
    ca: std::path::PathBuf,
}

impl Site {
    /// The portal of `server` on `https://127.0.0.1:{port}`, with the certificate the
    /// server made in its data directory.
    fn https(server: &Server, port: u16) -> Self {
        Self { url: format!("https://127.0.0.1:{port}"), ca: server.dir.path().join("data/http-tls/cert.pem") }
    }
}

/// The `[http]` and `[portal]` sections of a portal on 127.0.0.1:`port` over HTTPS.
fn portal_config(port: u16) -> String {
    format!("\n[http]\nlisten = [\"127.0.0.1:{port}\"]\n\n[portal]\nenabled = true\n")
}

/// One request with curl; `args` are extra curl arguments (headers, cookies, body).
fn curl(site: &Site, method: &str, path: &str, args: &[&str]) -> Reply {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let (body, headers) = (dir.path().join("body"), dir.path().join("headers"));
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}", "--max-time", "60", "--cacert"])
        .arg(&site.ca)
        .args(args)
        .arg(format!("{}{path}", site.url))
        .output()
        .unwrap();
    Reply {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default().to_lowercase(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

fn sign_in(base: &Site, jar: &Path, name: &str, password: &str) -> u16 {
    let jar = jar.to_str().unwrap();
    let form = format!("name={name}&password={password}");
    curl(base, "POST", "/login", &["-c", jar, "-b", jar, "--data", &form]).status
}

/// 20,000 authentication events of paula over 170 days (the newest 20 from Moscow, the
/// rest from Berlin), and a burst of failures of victim that raises an alert.
fn history(dir: &Path) -> std::path::PathBuf {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let span = 170 * 86_400_000i64;
    let mut text = String::new();
    for i in 0..TIMELINE_ROWS {
        let t = now - span + (span / TIMELINE_ROWS as i64) * i as i64;
        let far = i >= TIMELINE_ROWS - 20;
        let (country, city, asn, lat, lon) =
            if far { ("RU", "Moscow", 8359, 55.75, 37.62) } else { ("DE", "Berlin", 3320, 52.52, 13.40) };
        let nas = if i % 2 == 0 { "vpn-east" } else { "vpn-west" };
        let e = serde_json::json!({
            "time_ms": t, "user": "paula", "user_raw": "paula", "nas": nas, "client": "local",
            "calling_station_id": format!("198.51.100.{}", i % 200), "method": "pap", "decision": "accept",
            "reason_code": 0, "event_id": 6272, "policy": "vpn", "message": "",
            "location": {"country": country, "city": city, "asn": asn, "latitude": lat, "longitude": lon}
        });
        text.push_str(&format!("{e}\n"));
    }
    for i in 0..12 {
        let e = serde_json::json!({
            "time_ms": now - 60_000 + i * 1000, "user": "victim", "user_raw": "victim", "nas": "vpn-east",
            "client": "local", "calling_station_id": "203.0.113.9", "method": "pap", "decision": "reject",
            "reason_code": 16, "event_id": 6273, "policy": null, "message": "bad password"
        });
        text.push_str(&format!("{e}\n"));
    }
    // Two VPN sessions of paula ten minutes apart, Berlin then Moscow: an impossible travel.
    for (minutes_ago, session, ip, city, country, asn, lat, lon) in [
        (180, "p-berlin", "85.214.0.1", "Berlin", "DE", 3320, 52.52, 13.40),
        (170, "p-moscow", "95.165.0.1", "Moscow", "RU", 8359, 55.75, 37.62),
    ] {
        let e = serde_json::json!({
            "time": now / 1000 - minutes_ago * 60, "kind": "vpn_start", "user": "paula", "ip": ip, "nas": "vpn-east",
            "session": session, "location": {"country": country, "city": city, "asn": asn, "latitude": lat, "longitude": lon}
        });
        text.push_str(&format!("{e}\n"));
    }
    let path = dir.join("history.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

struct Portal {
    server: Server,
    base: Site,
    tokens: Vec<(&'static str, String)>,
    jars: tempfile::TempDir,
}

impl Portal {
    fn jar(&self, role: &str) -> String {
        self.jars.path().join(role).to_str().unwrap().to_string()
    }
}

fn cli_ok(s: &Server, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(common::bin())
        .args(args)
        .arg("--config")
        .arg(&s.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn start() -> Portal {
    let http = free_port();
    let extra = portal_config(http);
    let mut server = Server::start(&extra);
    server.stop();
    let file = history(server.dir.path());
    cli_ok(&server, &["replay", file.to_str().unwrap()], None);
    let mut tokens = Vec::new();
    for role in ["viewer", "analyst", "admin"] {
        cli_ok(&server, &["admin", "add", role, "--role", role, "--password-stdin"], Some(&format!("{PASSWORD}\n")));
        tokens.push((role, cli_ok(&server, &["admin", "token", &format!("{role}-token"), "--role", role], None)));
    }
    let listed = cli_ok(&server, &["admin", "list"], None);
    assert!(listed.contains("analyst") && listed.contains("viewer"), "{listed}");
    server.spawn();
    let base = Site::https(&server, http);
    // Hostile names from the wire: an Access-Request and an accounting Start.
    let (_, out) = radclient(
        server.auth_addr(),
        "auth",
        SECRET,
        &format!("User-Name = \"{HOSTILE_SCRIPT}\"\nUser-Password = \"x\"\nMessage-Authenticator = 0x00\n"),
    );
    assert!(out.contains("Access-Reject"), "{out}");
    let start = "User-Name = \"=HYPERLINK(\\\"http://x\\\")\"\nAcct-Status-Type = Start\nAcct-Session-Id = \"h1\"\n\
                 NAS-Identifier = \"vpn-east\"\nCalling-Station-Id = \"192.0.2.1\"\n";
    let (ok, out) = radclient(server.addr(), "acct", SECRET, start);
    assert!(ok, "{out}");
    let jars = tempfile::tempdir().unwrap();
    let portal = Portal { server, base, tokens, jars };
    for role in ["viewer", "analyst", "admin"] {
        assert_eq!(sign_in(&portal.base, Path::new(&portal.jar(role)), role, PASSWORD), 303, "{role} signs in");
    }
    portal
}

/// Who calls: a role's cookie, a role's token, nobody, or a wrong token.
#[derive(Debug, Clone, Copy)]
enum Who {
    Cookie(&'static str),
    Token(&'static str),
    Anonymous,
    BadToken,
}

fn call(p: &Portal, who: Who, method: &str, path: &str, extra: &[&str]) -> Reply {
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_string()).collect();
    match who {
        Who::Cookie(role) => args.extend(["-b".into(), p.jar(role)]),
        Who::Token(role) => {
            let t = &p.tokens.iter().find(|(r, _)| *r == role).unwrap().1;
            args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
        }
        Who::Anonymous => {}
        Who::BadToken => args.extend(["-H".into(), format!("Authorization: Bearer pcl_{}", "0".repeat(64))]),
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&p.base, method, path, &refs)
}

#[test]
fn portal_roles_csrf_hostile_names_and_exports() {
    let p = start();
    let json = ["-H", "Content-Type: application/json", "--data", "{\"comment\":\"looked at it\"}"];
    let same_origin = ["-H", "Sec-Fetch-Site: same-origin", "--data", "status=resolved"];
    // (method, path, extra curl args, [viewer, analyst, admin, anonymous, bad token]).
    type Row<'a> = (&'a str, &'a str, &'a [&'a str], [u16; 5]);
    let api: [Row; 8] = [
        ("GET", "/api/v1/users", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/users/paula", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/users/paula/timeline", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/sessions", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/auth-log", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/stats", &[], [200, 200, 200, 401, 401]),
        ("GET", "/api/v1/openapi.json", &[], [200, 200, 200, 401, 401]),
        ("PATCH", "/api/v1/alerts/1", &json, [403, 200, 200, 401, 401]),
    ];
    for (method, path, extra, expected) in api {
        let who = [Who::Token("viewer"), Who::Token("analyst"), Who::Token("admin"), Who::Anonymous, Who::BadToken];
        for (w, want) in who.into_iter().zip(expected) {
            let r = call(&p, w, method, path, extra);
            assert_eq!(r.status, want, "{w:?} {method} {path}: {}", r.body);
        }
    }
    let pages: [Row; 7] = [
        ("GET", "/", &[], [200, 200, 200, 303, 303]),
        ("GET", "/users?q=paula", &[], [200, 200, 200, 303, 303]),
        ("GET", "/users/paula", &[], [200, 200, 200, 303, 303]),
        ("GET", "/alerts", &[], [200, 200, 200, 303, 303]),
        ("GET", "/settings", &[], [403, 403, 200, 303, 303]),
        ("GET", "/audit", &[], [403, 403, 200, 303, 303]),
        ("POST", "/alerts/1", &same_origin, [403, 303, 303, 303, 303]),
    ];
    for (method, path, extra, expected) in pages {
        let who = [Who::Cookie("viewer"), Who::Cookie("analyst"), Who::Cookie("admin"), Who::Anonymous, Who::BadToken];
        for (w, want) in who.into_iter().zip(expected) {
            let r = call(&p, w, method, path, extra);
            assert_eq!(r.status, want, "{w:?} {method} {path}: {}", r.body);
        }
    }
    // The page's state change persisted; the API's comment too.
    let alert: serde_json::Value =
        serde_json::from_str(&call(&p, Who::Token("viewer"), "GET", "/api/v1/alerts/1", &[]).body).unwrap();
    assert_eq!(alert["status"], "resolved", "{alert}");
    assert!(alert["comments"].as_array().unwrap().iter().any(|c| c["text"] == "looked at it"), "{alert}");
    // A viewer sees no settings link.
    assert!(!call(&p, Who::Cookie("viewer"), "GET", "/", &[]).body.contains("/settings"));
    assert!(call(&p, Who::Cookie("admin"), "GET", "/", &[]).body.contains("/settings"));

    // Cross-site state changes are refused before anything else, whoever sends them.
    for header in ["Sec-Fetch-Site: cross-site", "Sec-Fetch-Site: same-site", "Origin: https://evil.example"] {
        let r = call(&p, Who::Cookie("analyst"), "POST", "/alerts/1", &["-H", header, "--data", "status=closed"]);
        assert_eq!(r.status, 403, "{header}");
        let r = call(
            &p,
            Who::Token("admin"),
            "PATCH",
            "/api/v1/alerts/1",
            &["-H", header, json[0], json[1], json[2], "{\"status\":\"closed\"}"],
        );
        assert_eq!(r.status, 403, "{header}");
    }
    let alert: serde_json::Value =
        serde_json::from_str(&call(&p, Who::Token("viewer"), "GET", "/api/v1/alerts/1", &[]).body).unwrap();
    assert_eq!(alert["status"], "resolved");

    // Headers of an authenticated page.
    let r = call(&p, Who::Cookie("viewer"), "GET", "/users/paula", &[]);
    for h in [
        "content-security-policy: default-src 'self'; script-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: same-origin",
        "cache-control: no-store",
    ] {
        assert!(r.headers.contains(h), "{h} missing: {}", r.headers);
    }
    // The entity page: the far-away location in the table, the facets present only.
    let r = call(&p, Who::Cookie("viewer"), "GET", "/users/paula?observed=180", &[]);
    assert!(r.body.contains("<td>Moscow</td>") && r.body.contains("<td>Berlin</td>"), "{}", r.body);
    assert!(r.body.contains("<option value=\"vpn-west\"") && !r.body.contains("<option value=\"mschapv2\""));
    assert!(!r.body.contains("http://") && !r.body.contains("https://"), "no external origin in the page");
    // The map: one named marker per place, each opening the timeline filtered to it, and
    // the impossible travel from Berlin to Moscow as a line.
    let moscow = "aria-label=\"Moscow, RU — 21 connections, last ";
    assert!(r.body.contains(moscow), "{}", r.body);
    assert!(r.body.contains("<a href=\"/users/paula?country=RU&amp;city=Moscow#timeline\""), "{}", r.body);
    assert!(r.body.contains("<title>Impossible travel: Berlin, DE → Moscow, RU"), "{}", r.body);
    let place = call(&p, Who::Token("viewer"), "GET", "/api/v1/users/paula/timeline?country=RU&city=Moscow", &[]);
    let place: serde_json::Value = serde_json::from_str(&place.body).unwrap();
    assert_eq!(place["items"].as_array().unwrap().len(), 20);
    let dashboard = call(&p, Who::Cookie("viewer"), "GET", "/", &[]).body;
    assert!(dashboard.contains("aria-label=\"Moscow, RU — 21 connections"), "{dashboard}");
    assert!(!dashboard.contains("http://") && !dashboard.contains("https://"), "no external origin in the page");
    let travel: serde_json::Value =
        serde_json::from_str(&call(&p, Who::Token("viewer"), "GET", "/api/v1/alerts?kind=impossible_travel", &[]).body)
            .unwrap();
    let id = travel["items"][0]["id"].as_i64().expect("an impossible travel alert");
    let alert = call(&p, Who::Cookie("viewer"), "GET", &format!("/alerts/{id}"), &[]).body;
    assert!(alert.contains("class=\"map small\"") && alert.contains("<line "), "{alert}");

    // Hostile names are inert: escaped in HTML, plain strings in JSON, neutralised in CSV.
    let html = call(&p, Who::Cookie("viewer"), "GET", "/users", &[]).body;
    assert!(!html.contains(HOSTILE_SCRIPT) && html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
    let page = call(&p, Who::Cookie("viewer"), "GET", "/users/%3Cscript%3Ealert(1)%3C%2Fscript%3E", &[]);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(HOSTILE_SCRIPT));
    let users = call(&p, Who::Token("viewer"), "GET", "/api/v1/users", &[]);
    assert!(users.headers.contains("content-type: application/json"));
    let names: serde_json::Value = serde_json::from_str(&users.body).unwrap();
    let names: Vec<&str> = names["items"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert!(names.contains(&HOSTILE_SCRIPT) && names.contains(&"=hyperlink(\"http://x\")"), "{names:?}");
    let csv = call(&p, Who::Token("viewer"), "GET", "/api/v1/users?format=csv", &[]);
    assert!(csv.body.contains("\"'=hyperlink(\"\"http://x\"\")\""), "{}", csv.body);
    assert!(!csv.body.lines().any(|l| l.starts_with('=')));
    let sessions = call(&p, Who::Token("viewer"), "GET", "/api/v1/sessions?format=csv", &[]);
    assert!(sessions.body.contains(",\"'=hyperlink(\"\"http://x\"\")\","), "{}", sessions.body);

    // Exports stream every row the filter selects, with no cap.
    let all = call(&p, Who::Token("viewer"), "GET", "/api/v1/users/paula/timeline?format=csv", &[]);
    assert!(all.headers.contains("content-disposition: attachment"), "{}", all.headers);
    assert_eq!(all.body.lines().count(), TIMELINE_ROWS + 1, "header + every row");
    let nd = call(&p, Who::Cookie("viewer"), "GET", "/users/paula?format=ndjson", &[]);
    assert_eq!(nd.body.lines().count(), TIMELINE_ROWS);
    let ru = call(&p, Who::Token("viewer"), "GET", "/api/v1/users/paula/timeline?format=csv&country=RU", &[]);
    assert_eq!(ru.body.lines().count(), 21);
    assert!(ru.body.lines().skip(1).all(|l| l.contains(",RU,Moscow,")), "{}", ru.body);
    // Keyset pages of the API cover the same rows.
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/users/paula/timeline?limit=1000&nas=vpn-east{cursor}");
        let page: serde_json::Value =
            serde_json::from_str(&call(&p, Who::Token("viewer"), "GET", &path, &[]).body).unwrap();
        seen += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, TIMELINE_ROWS / 2);
    assert_eq!(call(&p, Who::Token("viewer"), "GET", "/api/v1/auth-log?cursor=zz", &[]).status, 400);
    assert_eq!(call(&p, Who::Token("viewer"), "GET", "/api/v1/auth-log?limit=1001", &[]).status, 400);

    // The audit names sign-ins, changes and exports, with the source address.
    let audit = call(&p, Who::Cookie("admin"), "GET", "/audit?limit=1000", &[]).body;
    for action in ["sign-in", "alert-update", "export"] {
        assert!(audit.contains(&format!("<td>{action}</td>")), "{action}: {audit}");
    }
    assert!(audit.contains("<td>127.0.0.1</td>"));

    // Sign-out ends the session on the server: the old cookie no longer works.
    let jar = p.jar("analyst");
    let saved = std::fs::read_to_string(&jar).unwrap();
    assert_eq!(call(&p, Who::Cookie("analyst"), "POST", "/logout", &["-H", "Sec-Fetch-Site: same-origin"]).status, 303);
    std::fs::write(&jar, saved).unwrap();
    assert_eq!(call(&p, Who::Cookie("analyst"), "GET", "/", &[]).status, 303);

    // Five failures within 15 minutes: the sixth attempt is refused, even with the
    // right password, and audited. The error never says which part was wrong.
    let scratch = tempfile::tempdir().unwrap();
    let jar = scratch.path().join("jar");
    for _ in 0..5 {
        assert_eq!(sign_in(&p.base, &jar, "viewer", "wrong"), 401);
    }
    assert_eq!(sign_in(&p.base, &jar, "nobody", "wrong"), 429, "the source is limited too");
    assert_eq!(sign_in(&p.base, &jar, "viewer", PASSWORD), 429);
    let failed = curl(&p.base, "POST", "/login", &["--data", "name=viewer&password=wrong"]);
    assert!(failed.body.contains("Too many failed sign-ins"));
    let audit = call(&p, Who::Cookie("admin"), "GET", "/audit?limit=1000", &[]).body;
    assert!(audit.contains("<td>sign-in-limited</td>") && audit.contains("<td>sign-in-failed</td>"));
    assert!(!p.server.log().contains(PASSWORD), "no password in the log");
}

/// `portcullis cert show`, as `field: value` pairs.
fn cert_show(s: &Server) -> std::collections::HashMap<String, String> {
    cli_ok(s, &["cert", "show"], None)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

/// The base64 SHA-256 of the server certificate's public key, which Chromium trusts.
fn spki(s: &Server) -> String {
    let shown = cert_show(s);
    shown["spki sha256"].trim_end_matches(" (base64)").to_string()
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    let text = "[storage]\ndata_dir = \"data\"\n[[client]]\nname = \"l\"\naddress = \"127.0.0.1\"\nsecret = \"s3cret-s3cret\"\n\
                [http]\nlisten = [\"127.0.0.1:8080\", \"0.0.0.0:8080\"]\ntls = false\n[portal]\nenabled = true\n";
    std::fs::write(&config, text).unwrap();
    for command in ["check-config", "serve"] {
        let out = Command::new(common::bin()).args([command, "--config"]).arg(&config).output().unwrap();
        assert!(!out.status.success(), "{command}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("http.tls = false") && text.contains("0.0.0.0:8080"), "{command}: {text}");
        assert!(text.contains("loopback addresses only"), "{command}: {text}");
    }
    assert!(!dir.path().join("data/http-tls").exists(), "nothing made for a refused configuration");
    // Over TLS, the same addresses are fine.
    std::fs::write(&config, text.replace("tls = false\n", "")).unwrap();
    let out = Command::new(common::bin()).args(["check-config", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("http: HTTPS on 127.0.0.1:8080, 0.0.0.0:8080 with the self-signed certificate"),
        "{printed}"
    );
}

/// The first start makes the self-signed certificate (key 0600) and logs its
/// fingerprint, never the key; the next start serves the same one. Over TLS the session
/// cookie is `__Host-` prefixed and `Secure`, and HSTS is sent; plain HTTP to the port
/// gets nowhere.
#[test]
fn https_certificate_made_once_and_a_host_only_secure_cookie() {
    let http = free_port();
    let mut server = Server::start(&portal_config(http));
    let site = Site::https(&server, http);
    let key = server.dir.path().join("data/http-tls/key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let first = std::fs::read(&site.ca).unwrap();
    let shown = cert_show(&server);
    let fingerprint = shown["sha256"].clone();
    assert_eq!(fingerprint.len(), 95, "{shown:?}");
    assert!(shown["names"].contains("localhost, 127.0.0.1, ::1"), "{shown:?}");
    assert!(shown["not after"].starts_with("20"), "{shown:?}");

    cli_ok(&server, &["admin", "add", "admin", "--role", "admin", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let form = format!("name=admin&password={PASSWORD}");
    let r = curl(&site, "POST", "/login", &["-c", jar, "-b", jar, "--data", &form]);
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie =
        r.headers.lines().find(|l| l.starts_with("set-cookie: __host-portcullis_session=")).unwrap_or_default();
    for part in ["; path=/", "; httponly", "; samesite=strict", "; secure"] {
        assert!(cookie.contains(part), "{part} in {cookie:?}\n{}", r.headers);
    }
    assert!(!cookie.contains("domain="), "{cookie}");
    assert!(r.headers.contains("strict-transport-security: max-age="), "{}", r.headers);
    assert_eq!(curl(&site, "GET", "/", &["-b", jar]).status, 200, "signed in over HTTPS");
    let plain = Site { url: format!("http://127.0.0.1:{http}"), ca: site.ca.clone() };
    assert_eq!(curl(&plain, "GET", "/login", &[]).status, 0, "no plain HTTP on the HTTPS port");

    // The second start reuses the certificate and logs its fingerprint.
    server.config_log_level("info");
    assert_eq!(std::fs::read(&site.ca).unwrap(), first, "the certificate is kept");
    assert_eq!(cert_show(&server)["sha256"], fingerprint);
    assert_eq!(curl(&site, "GET", "/login", &[]).status, 200);
    let log = server.log();
    assert!(log.contains(&fingerprint) && log.contains("HTTPS certificate (self-signed)"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");

    // A backup keeps the certificate and its key, so a restored server shows the same one.
    let copy = server.dir.path().join("backup");
    cli_ok(&server, &["backup", "--to", copy.to_str().unwrap()], None);
    assert_eq!(std::fs::read(copy.join("http-tls/cert.pem")).unwrap(), first);
    assert_eq!(std::fs::read(copy.join("http-tls/key.pem")).unwrap(), std::fs::read(&key).unwrap());
}

/// The browser scenario of `tests/browser/portal.test.mjs` (Debian's Chromium driven by
/// playwright-core under `node --test`) against a server started like the one above.
/// Screenshots are written to $PORTAL_SHOTS when set, else under the test's directory.
#[test]
fn portal_in_a_real_browser() {
    let node = require("node");
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(Path::new("/usr/bin/chromium").is_file(), "chromium is missing: run scripts/install-test-deps.sh");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/install-test-deps.sh"
    );
    let p = start();
    let shots = std::env::var_os("PORTAL_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| p.server.dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(node)
        .args(["--test", "portal.test.mjs"])
        .current_dir(&browser)
        .env("PORTAL_URL", &p.base.url)
        .env("PORTAL_SPKI", spki(&p.server))
        .env("PORTAL_PASSWORD", PASSWORD)
        .env("PORTAL_RADIUS", p.server.auth_addr().to_string())
        .env("PORTAL_SECRET", SECRET)
        .env("PORTAL_ACCT", p.server.addr().to_string())
        .env("PORTAL_SHOTS", &shots)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}\nserver log:\n{}", p.server.log());
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 7, "{taken} screenshots in {}", shots.display());
}

const STORED_SECRET: &str = "portal-stored-Zq7-secret-only-here";
const ROTATED_SECRET: &str = "portal-rotated-Wk3-secret-only-here";
const PAGE_SECRET: &str = "portal-page-Hn5-secret-only-here";

#[test]
fn radius_clients_in_settings_and_the_api_with_a_write_only_secret() {
    require("radclient");
    let http = free_port();
    let extra = portal_config(http);
    let server = Server::start(&extra);
    let mut tokens = Vec::new();
    for role in ["viewer", "analyst", "admin"] {
        cli_ok(&server, &["admin", "add", role, "--role", role, "--password-stdin"], Some(&format!("{PASSWORD}\n")));
        tokens.push((role, cli_ok(&server, &["admin", "token", &format!("{role}-token"), "--role", role], None)));
    }
    let jars = tempfile::tempdir().unwrap();
    let p = Portal { base: Site::https(&server, http), server, tokens, jars };
    assert_eq!(sign_in(&p.base, Path::new(&p.jar("admin")), "admin", PASSWORD), 303);
    assert_eq!(sign_in(&p.base, Path::new(&p.jar("analyst")), "analyst", PASSWORD), 303);
    // Every answer is kept, to look for the secrets in them at the end.
    let mut answers = String::new();
    let mut keep = |r: Reply| {
        answers.push_str(&r.headers);
        answers.push_str(&r.body);
        r
    };
    let json = |body: &str| ["-H".to_string(), "Content-Type: application/json".into(), "--data".into(), body.into()];
    let new = json(&format!("{{\"name\":\"branch\",\"address\":\"127.0.0.2\",\"secret\":\"{STORED_SECRET}\"}}"));
    let new: Vec<&str> = new.iter().map(String::as_str).collect();

    // Only admins list or change clients; nobody without credentials.
    for (who, want) in [(Who::Token("viewer"), 403), (Who::Token("analyst"), 403), (Who::Anonymous, 401)] {
        assert_eq!(keep(call(&p, who, "GET", "/api/v1/clients", &[])).status, want, "{who:?}");
        assert_eq!(keep(call(&p, who, "POST", "/api/v1/clients", &new)).status, want, "{who:?}");
        assert_eq!(keep(call(&p, who, "DELETE", "/api/v1/clients/local", &[])).status, want, "{who:?}");
    }
    let form =
        format!("name=site-b&address=127.0.0.3&vendor=generic&require_message_authenticator=on&secret={PAGE_SECRET}");
    let same_origin = ["-H", "Sec-Fetch-Site: same-origin", "--data", form.as_str()];
    assert_eq!(keep(call(&p, Who::Cookie("analyst"), "POST", "/settings/clients", &same_origin)).status, 403);
    let cross = ["-H", "Sec-Fetch-Site: cross-site", "--data", form.as_str()];
    assert_eq!(keep(call(&p, Who::Cookie("admin"), "POST", "/settings/clients", &cross)).status, 403);

    // Added through the API: acknowledged within a second, no restart; the answer has
    // the client and no secret.
    let added_at = std::time::Instant::now();
    let r = keep(call(&p, Who::Token("admin"), "POST", "/api/v1/clients", &new));
    assert_eq!(r.status, 201, "{}", r.body);
    let added: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(added["client"]["managed_by"], "stored", "{added}");
    assert_eq!(added["client"]["address"], "127.0.0.2/32", "{added}");
    assert_eq!(added["client"]["require_message_authenticator"], true, "BlastRADIUS options default to on");
    let took = common::acct_until(p.server.addr(), "127.0.0.2", STORED_SECRET, true, added_at);
    assert!(took < std::time::Duration::from_secs(1), "acknowledged {took:?} after it was added");
    let list = keep(call(&p, Who::Token("admin"), "GET", "/api/v1/clients", &[]));
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let managed: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["managed_by"].as_str().unwrap()))
        .collect();
    assert_eq!(managed, [("local", "file"), ("branch", "stored")]);

    // Refused: the file's client, a duplicate, a bad address, a secret of the wrong type
    // (and the answer quotes no value).
    assert_eq!(keep(call(&p, Who::Token("admin"), "DELETE", "/api/v1/clients/local", &[])).status, 400);
    assert_eq!(keep(call(&p, Who::Token("admin"), "POST", "/api/v1/clients", &new)).status, 400);
    let bad = json("{\"name\":\"x\",\"address\":\"not-an-address\",\"secret\":\"s\"}");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    assert_eq!(keep(call(&p, Who::Token("admin"), "POST", "/api/v1/clients", &bad)).status, 400);
    let typed = json("{\"name\":\"x\",\"address\":\"127.0.0.9\",\"secret\":918273645546372819}");
    let typed: Vec<&str> = typed.iter().map(String::as_str).collect();
    let r = keep(call(&p, Who::Token("admin"), "POST", "/api/v1/clients", &typed));
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("918273645546372819"), "{}", r.body);
    assert_eq!(keep(call(&p, Who::Token("admin"), "GET", "/api/v1/clients/nobody", &[])).status, 404);

    // Re-keyed through the API: the new secret is acknowledged, the old one no longer.
    let rekey = json(&format!("{{\"secret\":\"{ROTATED_SECRET}\"}}"));
    let rekey: Vec<&str> = rekey.iter().map(String::as_str).collect();
    assert_eq!(keep(call(&p, Who::Token("admin"), "PATCH", "/api/v1/clients/branch", &rekey)).status, 200);
    common::acct_until(p.server.addr(), "127.0.0.2", ROTATED_SECRET, true, std::time::Instant::now());
    assert!(!common::acct_from(p.server.addr(), "127.0.0.2", STORED_SECRET, "old-secret"));

    // Added on the settings page, then re-keyed and deleted there.
    let r = keep(call(&p, Who::Cookie("admin"), "POST", "/settings/clients", &same_origin));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("client &#34;site-b&#34; added"), "{}", r.body);
    common::acct_until(p.server.addr(), "127.0.0.3", PAGE_SECRET, true, std::time::Instant::now());
    let page = keep(call(&p, Who::Cookie("admin"), "GET", "/settings", &[])).body;
    assert!(page.contains("<td>site-b</td><td>127.0.0.3/32</td><td>generic</td>"), "{page}");
    assert!(page.contains("configuration file (read-only)"), "{page}");
    // limit_proxy_state and send_message_authenticator were left unticked.
    assert!(page.contains("<td>yes</td><td>no</td><td>no</td>\n<td>stored</td>"), "{page}");
    let rekey_form = format!("secret={ROTATED_SECRET}x");
    let args = ["-H", "Sec-Fetch-Site: same-origin", "--data", rekey_form.as_str()];
    assert_eq!(keep(call(&p, Who::Cookie("admin"), "POST", "/settings/clients/site-b/secret", &args)).status, 200);
    let r = keep(call(&p, Who::Cookie("admin"), "POST", "/settings/clients/local/delete", &args[..2]));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("managed by the configuration file"), "{}", r.body);
    assert_eq!(keep(call(&p, Who::Cookie("admin"), "POST", "/settings/clients/site-b/delete", &args[..2])).status, 200);
    assert_eq!(keep(call(&p, Who::Token("admin"), "DELETE", "/api/v1/clients/branch", &[])).status, 204);
    common::acct_until(p.server.addr(), "127.0.0.2", ROTATED_SECRET, false, std::time::Instant::now());

    // Every change is audited; no secret is in any page, answer, export or log.
    let audit = keep(call(&p, Who::Cookie("admin"), "GET", "/audit?limit=1000", &[])).body;
    for action in ["client-add", "client-rekey", "client-delete"] {
        assert!(audit.contains(&format!("<td>{action}</td>")), "{action}: {audit}");
    }
    for path in ["/settings", "/status", "/sessions", "/auth-log", "/"] {
        keep(call(&p, Who::Cookie("admin"), "GET", path, &[]));
    }
    for path in ["/api/v1/sessions?format=csv", "/api/v1/auth-log?format=ndjson", "/api/v1/openapi.json"] {
        keep(call(&p, Who::Token("admin"), "GET", path, &[]));
    }
    let mut files = String::new();
    let mut stack = vec![p.server.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with("clients.db") {
                files.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    assert!(files.contains("client-add"), "the audit is among the files read");
    for secret in [STORED_SECRET, ROTATED_SECRET, PAGE_SECRET] {
        assert!(!answers.contains(secret), "{secret} in an answer");
        assert!(!files.contains(secret), "{secret} in a file of the data directory or the log");
    }
}

/// RFC 4648 base32 without padding, as the otpauth URI carries the secret.
fn base32_decode(text: &str) -> Vec<u8> {
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in text.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".iter().position(|&a| a == c).unwrap() as u64;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

#[test]
fn portal_sign_in_asks_for_the_totp_code_after_the_password() {
    let http = free_port();
    let extra = portal_config(http);
    let server = Server::start(&extra);
    let base = Site::https(&server, http);
    cli_ok(&server, &["admin", "add", "secure", "--role", "admin", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    let uri = cli_ok(&server, &["admin", "totp", "secure"], None);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = base32_decode(uri.split("secret=").nth(1).unwrap().split('&').next().unwrap());
    let totp = portcullis_auth::mfa::Totp::default();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let password = |pw: &str| {
        let form = format!("name=secure&password={pw}");
        curl(&base, "POST", "/login", &["-c", jar, "-b", jar, "--data", &form])
    };
    let code = |c: &str| curl(&base, "POST", "/login/code", &["-c", jar, "-b", jar, "--data", &format!("code={c}")]);
    let home = || curl(&base, "GET", "/", &["-b", jar]).status;

    // A wrong password never reaches the code; a right one is asked for the code and
    // does not sign in by itself.
    assert_eq!(password("wrong").status, 401);
    let asked = password(PASSWORD);
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("name=\"code\"") && asked.headers.contains("set-cookie: __host-portcullis_pending="));
    assert_eq!(home(), 303, "no session before the code");
    // Without the pending sign-in a code is worth nothing.
    let fresh = curl(&base, "POST", "/login/code", &["--data", &format!("code={}", totp.code(&secret, now()))]);
    assert_eq!(fresh.status, 401);
    let right = totp.code(&secret, now());
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let r = code(&wrong);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong or already used code"));
    assert_eq!(code(&right).status, 303);
    assert_eq!(home(), 200, "signed in with password and code");
    // The same code again is a replay.
    assert_eq!(password(PASSWORD).status, 200);
    assert_eq!(code(&right).status, 401, "a code is accepted once");
    // Codes count toward the sign-in limit: after five failures (one wrong password,
    // one wrong code, one replay, two more wrong codes) a valid unused code is refused.
    assert_eq!(code(&wrong).status, 401);
    assert_eq!(code(&wrong).status, 401);
    let next = totp.code(&secret, now() + 30);
    let limited = code(&next);
    assert_eq!(limited.status, 429, "{}", limited.body);
    let mut audit = Vec::new();
    for file in ["portal.db", "portal.db-wal"] {
        audit.extend(std::fs::read(server.dir.path().join("data").join(file)).unwrap_or_default());
    }
    assert!(String::from_utf8_lossy(&audit).contains("sign-in-code-failed"), "wrong codes are audited");
    let removed = cli_ok(&server, &["admin", "totp", "secure", "--remove"], None);
    assert!(removed.contains("password only"), "{removed}");
    let r = Command::new(common::bin()).args(["admin", "totp", "nobody", "--config"]).arg(&server.config).output();
    assert!(!r.unwrap().status.success(), "no such account");
}
