//! The LDAP user store against OpenLDAP slapd started on loopback: service-account
//! search, user bind for PAP, nested groups, NT hashes for MS-CHAPv2 and PEAP, account
//! status and dial-in permission, LDAPS and StartTLS, connection-request policies by
//! realm, and a directory that never answers.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, Server, free_port, last_event};

/// A slapd with its own configuration and database in a temporary directory.
struct Slapd {
    child: Child,
    ldap_port: u16,
    ldaps_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// AD attributes (their real OIDs) and the Samba NT hash, so slapd can stand in for a
/// directory that has them; the auxiliary class uses the documentation arc (RFC 5612).
const TEST_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.1119 NAME 'msNPAllowDialin' EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.7165.2.1.25 NAME 'sambaNTPassword' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{32} SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.1 NAME 'portcullisTestAccount' SUP top AUXILIARY MAY ( sAMAccountName $ userAccountControl $ msNPAllowDialin $ sambaNTPassword ) )
";

fn nt_hex(password: &str) -> String {
    portcullis_auth::mschap::nt_password_hash(password).iter().map(|b| format!("{b:02X}")).collect()
}

fn person(uid: &str, password: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nobjectClass: portcullisTestAccount\n\
         uid: {uid}\ncn: {uid}\nsn: {uid}\nsAMAccountName: {uid}\nuserPassword: {password}\n\
         sambaNTPassword: {}\n{extra}\n",
        nt_hex(password)
    )
}

fn group(cn: &str, members: &[&str]) -> String {
    let mut s = format!("dn: cn={cn},ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: {cn}\n");
    for m in members {
        s.push_str(&format!("member: {m}\n"));
    }
    s + "\n"
}

fn start_slapd(tls: &Path) -> Slapd {
    assert!(Path::new("/usr/sbin/slapd").is_file(), "slapd is not installed: run scripts/install-test-deps.sh first");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("db")).unwrap();
    std::fs::write(d.join("test.schema"), TEST_SCHEMA).unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\ninclude {dir}/test.schema\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {dir}/slapd.pid\n\
         TLSCertificateFile {tls}/server.pem\nTLSCertificateKeyFile {tls}/server.key\nTLSCACertificateFile {tls}/ca.pem\n\
         database mdb\nsuffix \"dc=example,dc=com\"\nrootdn \"cn=admin,dc=example,dc=com\"\nrootpw admin-secret\n\
         directory {dir}/db\nindex objectClass eq\nindex member eq\nindex uid eq\n",
        dir = d.display(),
        tls = tls.display()
    );
    std::fs::write(d.join("slapd.conf"), conf).unwrap();
    let mut ldif = String::from(
        "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,dc=example,dc=com\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: cn=portcullis,dc=example,dc=com\nobjectClass: person\ncn: portcullis\nsn: service\nuserPassword: service-secret\n\n",
    );
    // Alice's entry answers to a second login name as well.
    ldif.push_str(&person("alice", "wonderland", "uid: asmith\n"));
    ldif.push_str(&person("bob", "hello", "msNPAllowDialin: FALSE\n"));
    ldif.push_str(&person("dora", "disabled", "userAccountControl: 514\n"));
    ldif.push_str(&person("erin", "override", "msNPAllowDialin: TRUE\n"));
    ldif.push_str(&group("engineering", &["uid=alice,ou=people,dc=example,dc=com"]));
    ldif.push_str(&group(
        "vpn",
        &["cn=engineering,ou=groups,dc=example,dc=com", "uid=bob,ou=people,dc=example,dc=com"],
    ));
    ldif.push_str(&group("contractors", &["uid=erin,ou=people,dc=example,dc=com"]));
    std::fs::write(d.join("data.ldif"), ldif).unwrap();
    let out = Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(d.join("slapd.conf"))
        .arg("-l")
        .arg(d.join("data.ldif"))
        .output()
        .unwrap();
    assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
    let (ldap_port, ldaps_port) = (free_port(), free_port());
    let log = std::fs::File::create(d.join("slapd.log")).unwrap();
    let child = Command::new("/usr/sbin/slapd")
        .arg("-f")
        .arg(d.join("slapd.conf"))
        .arg("-h")
        .arg(format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"))
        .args(["-d", "0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", ldaps_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "slapd did not start: {}",
            std::fs::read_to_string(d.join("slapd.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Slapd { child, ldap_port, ldaps_port, _dir: dir }
}

const POLICIES: &str = r#"
[[network_policy]]
name = "contractors"
groups = ["contractors"]
grant = false

[[network_policy]]
name = "vpn staff"
groups = ["vpn"]
session_timeout = 3600
"#;

fn ldap_block(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[ldap]]\nname = \"{name}\"\nurls = [\"{url}\"]\nbind_dn = \"cn=portcullis,dc=example,dc=com\"\n\
         bind_password = \"service-secret\"\nbase_dn = \"dc=example,dc=com\"\nuser_filter = \"(uid={{user}})\"\n\
         nt_hash_attribute = \"sambaNTPassword\"\nca_certificate = \"tls/ca.pem\"\ntimeout_seconds = 2\n{extra}\n"
    )
}

fn crp(name: &str, realm: &str, store: &str) -> String {
    format!("[[connection_request_policy]]\nname = \"{name}\"\nrealms = [\"{realm}\"]\nuser_store = \"{store}\"\n")
}

/// A server routing EXAMPLE (plain LDAP), LDAPS.EXAMPLE (ldaps://), TLS.EXAMPLE
/// (StartTLS) and SLOW (a directory that accepts connections and never answers) to
/// directories, names without a realm to local users, and nothing else.
fn server(slapd: &Slapd, tls_dir: &Path, silent: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(tls_dir, &dir.path().join("tls"));
    let mut extra = String::from("\n[eap]\ncertificate = \"tls/server.pem\"\nprivate_key = \"tls/server.key\"\n\n");
    extra.push_str(&ldap_block("corp", &format!("ldap://127.0.0.1:{}", slapd.ldap_port), ""));
    extra.push_str(&ldap_block("corp-ldaps", &format!("ldaps://127.0.0.1:{}", slapd.ldaps_port), ""));
    extra.push_str(&ldap_block("corp-starttls", &format!("ldap://127.0.0.1:{}", slapd.ldap_port), "starttls = true"));
    extra.push_str(&ldap_block("slow", &format!("ldap://127.0.0.1:{silent}"), ""));
    extra.push_str(&crp("corp", "EXAMPLE", "corp"));
    extra.push_str(&crp("corp by upn", "example.com", "corp"));
    extra.push_str(&crp("ldaps", "LDAPS.EXAMPLE", "corp-ldaps"));
    extra.push_str(&crp("starttls", "TLS.EXAMPLE", "corp-starttls"));
    extra.push_str(&crp("slow", "SLOW", "slow"));
    extra.push_str(&crp("local users", "", "local"));
    extra.push_str(POLICIES);
    let s = Server::start_in(dir, free_port(), &extra);
    let mut child = Command::new(common::bin())
        .args(["user", "add", "lou", "--password-stdin", "--group", "vpn", "--config"])
        .arg(&s.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "local-pass").unwrap();
    assert!(child.wait().unwrap().success());
    s
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn make_tls() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["cert", "init", "--name", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn radtest(s: &Server, user: &str, password: &str) -> bool {
    common::radtest(s, "pap", user, password).0
}

#[test]
fn ldap_store_pap_groups_status_dialin_tls_and_realm_routing() {
    let tls = make_tls();
    let slapd = start_slapd(tls.path());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = server(&slapd, tls.path(), silent.local_addr().unwrap().port());

    assert!(radtest(&s, "EXAMPLE\\alice", "wonderland"), "nested group vpn via engineering");
    let e = last_event(&s, "alice");
    assert_eq!((e["decision"].as_str(), e["policy"].as_str()), (Some("accept"), Some("vpn staff")), "{e}");
    assert!(radtest(&s, "alice@example.com", "wonderland"), "userPrincipalName-style realm");
    assert!(!radtest(&s, "EXAMPLE\\alice", "wrong"));
    assert_eq!(last_event(&s, "alice")["reason_code"], 16);
    assert!(!radtest(&s, "EXAMPLE\\alice", ""), "an empty password never becomes an anonymous bind");
    assert!(!radtest(&s, "EXAMPLE\\dora", "disabled"));
    assert_eq!(last_event(&s, "dora")["reason_code"], 34);
    assert!(!radtest(&s, "EXAMPLE\\bob", "hello"), "msNPAllowDialin FALSE");
    assert_eq!(last_event(&s, "bob")["reason_code"], 65);
    assert!(radtest(&s, "EXAMPLE\\erin", "override"), "msNPAllowDialin TRUE overrides the denying policy");
    assert!(!radtest(&s, "nobody@example.com", "x"));
    assert_eq!(last_event(&s, "nobody")["reason_code"], 8);
    assert!(!radtest(&s, "al*@example.com", "wonderland"), "filter metacharacters are escaped");
    assert!(radtest(&s, "LDAPS.EXAMPLE\\alice", "wonderland"), "ldaps://");
    assert!(radtest(&s, "TLS.EXAMPLE\\alice", "wonderland"), "StartTLS");
    assert!(radtest(&s, "lou", "local-pass"), "no realm: local users");
    assert!(!radtest(&s, "mallory@elsewhere.org", "x"));
    assert_eq!(last_event(&s, "mallory")["reason_code"], 49);

    // A directory that never answers delays only its own requests.
    let slow_start = Instant::now();
    let slow_auth = s.auth_port;
    let slow = std::thread::spawn(move || {
        Command::new("radtest")
            .args(["-t", "pap", "SLOW\\\\alice", "wonderland"])
            .arg(format!("127.0.0.1:{slow_auth}"))
            .args(["0", SECRET])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(radtest(&s, "lou", "local-pass"), "answered while the slow directory is pending");
    assert!(radtest(&s, "EXAMPLE\\alice", "wonderland"));
    let local_done = slow_start.elapsed();
    let out = slow.join().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Access-Reject"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(slow_start.elapsed() > local_done, "the slow directory answered after the others");
    let e = last_event(&s, "alice");
    assert!(e["message"].as_str().unwrap().contains("unavailable"), "{e}");

    let out = s.cli(&["policy", "test", "--user", "EXAMPLE\\bob", "--client", "local"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connection request policy \"corp\" matched"), "{text}");
    assert!(text.contains("dial-in denied"), "{text}");
    assert_eq!(last_event(&s, "mallory")["connection_request_policy"], serde_json::Value::Null);
    assert_eq!(last_event(&s, "dora")["connection_request_policy"], "corp");
    drop(silent);
}

#[test]
fn ldap_nt_hash_serves_mschapv2_and_peap() {
    let tls = make_tls();
    let slapd = start_slapd(tls.path());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = server(&slapd, tls.path(), silent.local_addr().unwrap().port());
    common::eapol_peap(&s, "EXAMPLE\\alice", "anonymous@example.com", "wonderland");
    let e = last_event(&s, "alice");
    assert_eq!((e["method"].as_str(), e["decision"].as_str()), (Some("peap"), Some("accept")), "{e}");

    let v = common::pyrad_mschapv2(&s, "EXAMPLE\\alice", "wonderland");
    assert_eq!(v["code"], "accept", "{v}");
    assert_eq!(v["recv_key_ok"], true, "{v}");
    // Inside the tunnel the identity goes through the connection-request policies too:
    // a realm that no policy accepts is refused even behind an accepted outer name.
    let (ok, log) = common::eapol_peap_try(&s, "NOWHERE\\alice", "anonymous@example.com", "wonderland");
    assert!(!ok, "{log}");
    let e = last_event(&s, "alice");
    assert_eq!((e["decision"].as_str(), e["reason_code"].as_i64()), (Some("reject"), Some(49)), "{e}");
    drop(silent);
}

/// A directory, and a server routing EXAMPLE to it with `rest` (MFA and policies).
fn corp_server(rest: &str) -> (tempfile::TempDir, Slapd, Server) {
    let tls = make_tls();
    let slapd = start_slapd(tls.path());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(tls.path(), &dir.path().join("tls"));
    let mut extra = ldap_block("corp", &format!("ldap://127.0.0.1:{}", slapd.ldap_port), "");
    extra.push_str(&crp("corp", "EXAMPLE", "corp"));
    extra.push_str(rest);
    let s = Server::start_in(dir, free_port(), &extra);
    (tls, slapd, s)
}

#[test]
fn a_second_factor_belongs_to_the_directory_entry_not_to_the_name_typed() {
    let (_tls, _slapd, s) =
        corp_server("\n[mfa]\n\n[[network_policy]]\nname = \"staff\"\ngroups = [\"vpn\"]\nmfa = \"optional\"\n");
    let out = s.cli(&["mfa", "enroll", "EXAMPLE\\alice", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same entry under its other name: the factor is asked for, not skipped.
    let (ok, text) = common::radtest(&s, "pap", "EXAMPLE\\asmith", "wonderland");
    assert!(!ok && text.contains("Access-Challenge"), "{text}");
    let e = last_event(&s, "alice");
    assert_eq!((e["decision"].as_str(), e["user_raw"].as_str()), (Some("challenge"), Some("EXAMPLE\\asmith")), "{e}");
    let listed = s.cli(&["mfa", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v[0]["user"], "ldap:corp:uid=alice,ou=people,dc=example,dc=com", "{v}");
}

#[test]
fn a_grant_by_dial_in_permission_through_a_denying_policy_still_asks_for_the_second_factor() {
    // The denying policy's author wrote mfa = "off" for a policy that only refuses.
    let (_tls, _slapd, s) = corp_server(
        "\n[mfa]\npolicy_default = \"required\"\n\n[[network_policy]]\nname = \"contractors\"\n\
         groups = [\"contractors\"]\ngrant = false\nmfa = \"off\"\n",
    );
    assert!(!radtest(&s, "EXAMPLE\\erin", "override"), "erin has no factor");
    let e = last_event(&s, "erin");
    assert_eq!((e["policy"].as_str(), e["mfa"].as_str()), (Some("contractors"), Some("not_enrolled")), "{e}");
}
