//! Active Directory, for real: a Samba AD domain controller provisioned and started on
//! loopback by the test. PAP binds as the user over LDAP, groups come from AD's
//! LDAP_MATCHING_RULE_IN_CHAIN, MS-CHAPv2 and PEAP go through Samba's `ntlm_auth`
//! (AD never reveals NT hashes), and userAccountControl and msNPAllowDialin decide.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, free_port, last_event, pyrad_mschapv2};

const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";

struct Dc {
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dc {
    fn drop(&mut self) {
        // samba starts helpers (winbindd) in its own process group.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

fn samba_tool(dc: &Dc, args: &[&str]) -> String {
    run(Command::new("samba-tool").args(args).arg("-s").arg(&dc.conf))
}

fn start_dc() -> Dc {
    for tool in ["/usr/sbin/samba", "/usr/bin/samba-tool", "/usr/bin/ntlm_auth"] {
        assert!(Path::new(tool).is_file(), "{tool} is missing: run scripts/install-test-deps.sh first");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let d = d.as_path();
    run(Command::new("samba-tool").args([
        "domain",
        "provision",
        "--realm=EXAMPLE.TEST",
        "--domain=EXAMPLE",
        "--server-role=dc",
        "--dns-backend=NONE",
        "--use-rfc2307",
        &format!("--adminpass={ADMIN_PASSWORD}"),
        &format!("--targetdir={}", d.display()),
        "--option=interfaces=lo",
        "--option=bind interfaces only=yes",
        &format!("--option=log file={}/log.%m", d.display()),
    ]));
    let conf = d.join("etc/smb.conf");
    // Simple binds on ldap:// (the test has no DNS name for LDAPS), and MS-CHAPv2 allowed
    // (Samba DCs accept only NTLMv2 by default; AD admins set the same for RADIUS).
    let text = std::fs::read_to_string(&conf).unwrap();
    // Samba's RPC endpoints default to 49152-65535, inside Linux's ephemeral range, where a
    // socket another test opened can hold the port Samba picks first: keep them below that
    // range and below the ports the tests pick (10000 up).
    let global = "[global]\n\tldap server require strong auth = no\n\tntlm auth = mschapv2-and-ntlmv2-only\n\
                  \trpc server dynamic port range = 6100-6300\n";
    std::fs::write(&conf, text.replacen("[global]\n", global, 1)).unwrap();
    let log = std::fs::File::create(d.join("samba.out")).unwrap();
    let child = Command::new("/usr/sbin/samba")
        .args(["-i", "-M", "single", "-s"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let dc = Dc { child, conf, _dir: dir };
    // Ready when winbind answers ntlm_auth for the administrator.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = Command::new("ntlm_auth")
            .arg(format!("--configfile={}", dc.conf.display()))
            .args(["--username=Administrator", "--domain=EXAMPLE", &format!("--password={ADMIN_PASSWORD}")])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the domain controller did not come up: {}",
            std::fs::read_to_string(d.join("samba.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    dc
}

fn populate(dc: &Dc) {
    for (user, password) in
        [("alice", "Wonderl4nd!"), ("bob", "Hell0-There!"), ("dora", "Disabl3d-Now!"), ("mallory", "Mall0ry-Own!")]
    {
        samba_tool(dc, &["user", "create", user, password]);
    }
    samba_tool(dc, &["user", "disable", "dora"]);
    for g in ["vpn", "engineering"] {
        samba_tool(dc, &["group", "create", g]);
    }
    samba_tool(dc, &["group", "addmembers", "engineering", "alice"]);
    samba_tool(dc, &["group", "addmembers", "vpn", "engineering,bob,dora,mallory"]);
    // Bob's Dial-in tab says "Deny access": samba-tool edits the entry with $EDITOR.
    let editor = dc.conf.with_file_name("deny-dialin.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i '/^dn: /a msNPAllowDialin: FALSE' \"$1\"\n").unwrap();
    run(Command::new("chmod").arg("+x").arg(&editor));
    run(Command::new("samba-tool").args(["user", "edit", "bob", "-s"]).arg(&dc.conf).env("EDITOR", &editor));
}

fn portcullis(dc: &Dc) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let out = Command::new(common::bin()).args(["cert", "init", "--dir"]).arg(&tls).output().unwrap();
    assert!(out.status.success());
    let extra = format!(
        r#"
[eap]
certificate = "tls/server.pem"
private_key = "tls/server.key"

[[ldap]]
name = "ad"
urls = ["ldap://127.0.0.1:389"]
bind_dn = "CN=Administrator,CN=Users,DC=example,DC=test"
bind_password = "{ADMIN_PASSWORD}"
base_dn = "DC=example,DC=test"
user_filter = "(&(objectClass=user)(sAMAccountName={{user}}))"
group_membership = "in-chain"
group_filter = "(objectClass=group)"
ntlm_auth = ["ntlm_auth", "--configfile={conf}"]
ntlm_domain = "EXAMPLE"
timeout_seconds = 10

[[connection_request_policy]]
name = "active directory"
user_store = "ad"

[[network_policy]]
name = "vpn staff"
groups = ["vpn"]
"#,
        conf = dc.conf.display()
    );
    Server::start_in(dir, free_port(), &extra)
}

#[test]
fn samba_active_directory_pap_mschapv2_peap_groups_and_account_state() {
    let dc = start_dc();
    populate(&dc);
    let s = portcullis(&dc);

    assert!(
        common::radtest(&s, "pap", "EXAMPLE\\alice", "Wonderl4nd!").0,
        "PAP by user bind: {}",
        last_event(&s, "alice")
    );
    let e = last_event(&s, "alice");
    assert_eq!(e["policy"], "vpn staff", "vpn through nested engineering (in-chain): {e}");
    assert!(!common::radtest(&s, "pap", "EXAMPLE\\alice", "wrong").0);

    let ok = pyrad_mschapv2(&s, "EXAMPLE\\alice", "Wonderl4nd!");
    assert_eq!(ok["code"], "accept", "{ok} {}", last_event(&s, "alice"));
    assert_eq!(ok["success_verified"], true, "MS-CHAP2-Success from ntlm_auth's NT_KEY: {ok}");
    assert_eq!(ok["send_key_ok"], true, "{ok}");
    assert_eq!(ok["recv_key_ok"], true, "{ok}");
    let bad = pyrad_mschapv2(&s, "EXAMPLE\\alice", "Wrong-Passw0rd");
    assert!(bad["error"].as_str().unwrap_or_default().starts_with("E=691"), "{bad}");
    let e = last_event(&s, "alice");
    assert_eq!(e["reason_code"], 16, "{e}");
    assert!(e["message"].as_str().unwrap().contains("domain controller: 0xc000006"), "{e}");

    let dora = pyrad_mschapv2(&s, "EXAMPLE\\dora", "Disabl3d-Now!");
    assert_eq!(dora["code"], "reject");
    assert_eq!(last_event(&s, "dora")["reason_code"], 34, "userAccountControl ACCOUNTDISABLE");
    assert!(!common::radtest(&s, "pap", "EXAMPLE\\bob", "Hell0-There!").0);
    assert_eq!(last_event(&s, "bob")["reason_code"], 65, "msNPAllowDialin FALSE");

    common::eapol_peap(&s, "EXAMPLE\\alice", "anonymous@example.test", "Wonderl4nd!");
    assert_eq!(last_event(&s, "alice")["method"], "peap");

    // Mallory knows only her own password. EAP identity alice, MS-CHAPv2 Name mallory
    // and a response made with mallory's password: the domain controller would verify
    // it for mallory, so only the name check and asking about the looked-up account
    // stand between her and alice's session.
    let eap = |identity: &str, name: &str, password: &str| {
        let out = Command::new(common::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
            .args(["127.0.0.1", &s.auth_port.to_string(), common::SECRET])
            .arg(common::dictionary_dir())
            .args(["eap-mschapv2", identity, name, password])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let own = eap("EXAMPLE\\mallory", "EXAMPLE\\mallory", "Mall0ry-Own!");
    assert_eq!(own["code"], "accept", "her own login works: {own}");
    let forged = eap("EXAMPLE\\alice", "EXAMPLE\\mallory", "Mall0ry-Own!");
    assert_eq!(forged["code"], "reject", "identity alice, Name mallory: {forged}");
    let e = last_event(&s, "alice");
    assert_eq!(e["decision"], "reject", "{e}");
    assert!(e["message"].as_str().unwrap().contains("another user"), "{e}");
    // A domain the User-Name carries never reaches ntlm_auth: the account is asked
    // about in the configured domain.
    let other = pyrad_mschapv2(&s, "OTHERDOM\\mallory", "Mall0ry-Own!");
    assert_eq!(other["code"], "accept", "checked as EXAMPLE\\mallory: {other} {}", last_event(&s, "mallory"));
    assert_eq!(last_event(&s, "mallory")["user"], "mallory");
}
