//! MS-CHAPv2 against Active Directory through Samba's `ntlm_auth` helper, as FreeRADIUS
//! does it: the domain controller checks the NT-Response and returns the hash of the NT
//! hash (`NT_KEY`), from which the server derives MS-CHAP2-Success and the MPPE keys.
//! The helper runs without a shell; every value is one argument.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_auth::mschap::MschapError;
use portcullis_auth::policy::reason;

use crate::hex;

/// How to run the helper.
#[derive(Debug, Clone)]
pub struct NtlmAuth {
    /// Program and fixed arguments, e.g. `["ntlm_auth", "--configfile=/etc/samba/smb.conf"]`.
    pub command: Vec<String>,
    /// NT domain when the user name carries none.
    pub domain: Option<String>,
    pub timeout: Duration,
}

/// Maps the helper's NT status to an NPS reason, MS-CHAP error and explanation.
fn refusal(output: &str) -> (u32, MschapError, String) {
    let status = output
        .rsplit_once("(0x")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    let (code, error, what) = match status {
        Some(0xc000_0064) => (reason::NO_SUCH_USER, MschapError::AuthenticationFailure, "no such user"),
        Some(0xc000_006a | 0xc000_006d) => {
            (reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "wrong password")
        }
        Some(0xc000_0072) => (reason::ACCOUNT_DISABLED, MschapError::AccountDisabled, "account disabled"),
        Some(0xc000_0234) => (reason::ACCOUNT_LOCKED, MschapError::AccountDisabled, "account locked out"),
        Some(0xc000_0193) => (reason::ACCOUNT_EXPIRED, MschapError::AccountDisabled, "account expired"),
        Some(0xc000_0071 | 0xc000_0224) => {
            (reason::ACCOUNT_EXPIRED, MschapError::PasswordExpired, "password expired or must change")
        }
        Some(0xc000_006f) => (reason::LOGON_HOURS, MschapError::RestrictedLogonHours, "outside the logon hours"),
        _ => (reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "ntlm_auth refused"),
    };
    let status = status.map_or_else(|| "no NT status".to_string(), |s| format!("0x{s:08x}"));
    (code, error, format!("{what} (domain controller: {status})"))
}

impl NtlmAuth {
    /// Asks the domain controller to check an MS-CHAPv2 response for `account`: the
    /// login name the user store returned for the looked-up account, in the configured
    /// domain. A domain or realm the peer typed never reaches the helper, so a response
    /// made with one user's password cannot be verified as another's. `challenge` is the
    /// 8-octet ChallengeHash.
    pub fn verify(
        &self,
        account: &str,
        challenge: &[u8; 8],
        nt_response: &[u8; 24],
    ) -> Result<[u8; 16], (u32, MschapError, String)> {
        let failed = |m: String| (reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, m);
        let name = account;
        if name.is_empty() || name.contains(['\\', '@', '\0', '\n']) {
            return Err(failed(format!("{name:?} is not a plain account name")));
        }
        let domain = self.domain.clone();
        let Some((program, fixed)) = self.command.split_first() else {
            return Err(failed("ntlm_auth is not configured".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(fixed)
            .arg("--request-nt-key")
            .arg("--allow-mschapv2")
            .arg(format!("--username={name}"))
            .arg(format!("--challenge={}", hex(challenge)))
            .arg(format!("--nt-response={}", hex(nt_response)));
        if let Some(d) = domain {
            cmd.arg(format!("--domain={d}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run {program}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed("ntlm_auth did not answer in time".into()));
                }
            }
        };
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.by_ref().take(64 * 1024).read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.by_ref().take(64 * 1024).read_to_string(&mut out);
        }
        let key = out.lines().find_map(|l| l.trim().strip_prefix("NT_KEY:")).map(str::trim);
        match key {
            Some(k) if status.success() && k.len() == 32 => {
                let mut hash_hash = [0u8; 16];
                for (i, b) in hash_hash.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&k[2 * i..2 * i + 2], 16).map_err(|_| failed("malformed NT_KEY".into()))?;
                }
                Ok(hash_hash)
            }
            _ => Err(refusal(&out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_status_codes_map_to_nps_reasons() {
        let r = |s: &str| refusal(s).0;
        assert_eq!(r("NT_STATUS_WRONG_PASSWORD: When trying to update a password... (0xc000006a)"), 16);
        assert_eq!(r("NT_STATUS_ACCOUNT_DISABLED: The referenced account is currently disabled (0xc0000072)"), 34);
        assert_eq!(r("Logon failure (0xc000006d)"), 16);
        assert_eq!(r("NT_STATUS_NO_SUCH_USER (0xc0000064)"), 8);
        assert_eq!(r("NT_STATUS_ACCOUNT_LOCKED_OUT (0xc0000234)"), 36);
        assert_eq!(r("garbage"), 16);
        assert!(refusal("x (0xc0000072)").2.contains("0xc0000072"));
    }

    #[test]
    fn a_missing_program_is_a_clear_failure() {
        let n =
            NtlmAuth { command: vec!["/nonexistent/ntlm_auth".into()], domain: None, timeout: Duration::from_secs(1) };
        let e = n.verify("alice", &[0; 8], &[0; 24]).unwrap_err();
        assert!(n.verify("OTHER\\alice", &[0; 8], &[0; 24]).unwrap_err().2.contains("plain account"));
        assert!(e.2.contains("cannot run"), "{e:?}");
    }
}
