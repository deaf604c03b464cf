//! LDAP and Active Directory as a user store (ldap3 over tokio).
//!
//! A pool of connections bound as the service account searches for users and their
//! groups; PAP passwords are checked by binding as the user on a fresh connection.
//! Every operation has a deadline, and the pool bounds how many run at once, so a slow
//! directory costs its own requests time, not anyone else's.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use serde::Deserialize;

use crate::config::Secret;
use crate::lock;

/// How group membership is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupMembership {
    /// Search groups whose `member` is the user, then groups containing those, and so on
    /// (nested groups on any directory).
    Search,
    /// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: one search returns every group the
    /// user is in, directly or through nesting.
    InChain,
    /// The user's own `memberOf` values (direct membership only).
    MemberOf,
}

/// One `[[ldap]]` directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// Referred to by connection-request policies.
    pub name: String,
    /// `ldap://host:389` or `ldaps://host:636`; several are tried in order.
    pub urls: Vec<String>,
    /// Use StartTLS on `ldap://` URLs.
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA certificate(s) that sign the directory's certificate (default: the
    /// system's trusted roots).
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// Service account for searches.
    pub bind_dn: String,
    #[serde(default)]
    pub bind_password: Option<Secret>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched.
    pub base_dn: String,
    /// `{user}` is replaced by the (escaped) user name, e.g.
    /// `(&(objectClass=user)(sAMAccountName={user}))` or `(uid={user})`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    #[serde(default = "default_membership")]
    pub group_membership: GroupMembership,
    /// Where groups are searched (default: `base_dn`).
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// Which entries are groups, for `search` and `in-chain`.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The attribute whose value names a group in network policies.
    #[serde(default = "default_group_name")]
    pub group_name_attribute: String,
    /// Attribute holding the NT hash (32 hex digits), e.g. `sambaNTPassword`, for
    /// MS-CHAPv2, EAP-MSCHAPv2 and PEAP.
    #[serde(default)]
    pub nt_hash_attribute: Option<String>,
    /// The dial-in permission attribute (`TRUE` allow, `FALSE` deny, absent: policy).
    #[serde(default = "default_dialin")]
    pub dialin_attribute: String,
    /// Samba's `ntlm_auth` and its fixed arguments, for MS-CHAPv2 and PEAP against Active
    /// Directory (which never reveals NT hashes), e.g.
    /// `["/usr/bin/ntlm_auth", "--configfile=/etc/samba/smb.conf"]`.
    #[serde(default)]
    pub ntlm_auth: Option<Vec<String>>,
    /// NT domain for `ntlm_auth` when the user name carries none.
    #[serde(default)]
    pub ntlm_domain: Option<String>,
    /// Deadline for each directory operation.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Most connections open at once.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
}

fn default_user_filter() -> String {
    "(|(sAMAccountName={user})(uid={user}))".into()
}
fn default_membership() -> GroupMembership {
    GroupMembership::Search
}
fn default_group_filter() -> String {
    "(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))".into()
}
fn default_group_name() -> String {
    "cn".into()
}
fn default_dialin() -> String {
    "msNPAllowDialin".into()
}
fn default_timeout() -> u64 {
    5
}
fn default_pool() -> usize {
    8
}

/// Nesting deeper than this is not followed (and cycles end there too).
const MAX_GROUP_DEPTH: usize = 8;
/// Most groups collected for one user.
const MAX_GROUPS: usize = 1024;

/// A directory failure (as opposed to a wrong password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory {0} did not answer in time")]
    Timeout(String),
    #[error("directory {name}: {message}")]
    Failed { name: String, message: String },
}

/// What the directory says about an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    pub dn: String,
    /// The entry's own login name (`sAMAccountName`, else `uid`), whatever name found it.
    pub login: Option<String>,
    pub groups: Vec<String>,
    pub nt_hash: Option<[u8; 16]>,
    pub disabled: bool,
    pub locked: bool,
    pub expired: bool,
    pub dialin: Option<bool>,
}

/// Outcome of a password check by binding as the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Ok,
    WrongPassword,
    /// The directory refused the account itself (Active Directory's data codes).
    Disabled,
    Locked,
    Expired,
}

/// A configured directory with its connection pool.
pub struct LdapStore {
    config: LdapConfig,
    password: Secret,
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<VecDeque<Ldap>>,
    permits: tokio::sync::Semaphore,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for LdapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapStore").field("name", &self.config.name).field("urls", &self.config.urls).finish()
    }
}

impl LdapStore {
    /// Prepares the store (no connection yet). Must be called inside a tokio runtime.
    pub fn new(config: LdapConfig) -> Result<Self, String> {
        let password = match (&config.bind_password, &config.bind_password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(path)) => Secret::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("ldap {:?}: bind_password_file {}: {e}", config.name, path.display()))?
                    .trim_end_matches(['\r', '\n']),
            ),
            _ => return Err(format!("ldap {:?}: set bind_password or bind_password_file", config.name)),
        };
        let tls = Arc::new(client_tls(&config)?);
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let permits = tokio::sync::Semaphore::new(config.pool_size.max(1));
        Ok(Self { config, password, tls, idle: Mutex::new(VecDeque::new()), permits, handle })
    }

    /// The `ntlm_auth` helper for MS-CHAPv2, when configured.
    pub fn ntlm(&self) -> Option<crate::ntlm::NtlmAuth> {
        let command = self.config.ntlm_auth.clone().filter(|c| !c.is_empty())?;
        Some(crate::ntlm::NtlmAuth { command, domain: self.config.ntlm_domain.clone(), timeout: self.timeout() })
    }

    /// The directory's configured name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds.max(1))
    }

    fn failed(&self, message: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::Failed { name: self.config.name.clone(), message: message.to_string() }
    }

    /// Runs a directory operation from blocking code (the blocking pool), with the deadline.
    pub fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        let deadline = self.timeout() * 2;
        self.handle.block_on(async {
            tokio::time::timeout(deadline, f).await.unwrap_or_else(|_| Err(DirectoryError::Timeout(self.name().into())))
        })
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut last = None;
        for url in &self.config.urls {
            let settings = LdapConnSettings::new()
                .set_conn_timeout(self.timeout())
                .set_starttls(self.config.starttls && url.starts_with("ldap://"))
                .set_config(Arc::clone(&self.tls));
            match tokio::time::timeout(self.timeout(), LdapConnAsync::with_settings(settings, url)).await {
                Ok(Ok((conn, mut ldap))) => {
                    tokio::spawn(async move {
                        let _ = conn.drive().await;
                    });
                    ldap.with_timeout(self.timeout());
                    return Ok(ldap);
                }
                Ok(Err(e)) => last = Some(format!("{url}: {e}")),
                Err(_) => last = Some(format!("{url}: connection timed out")),
            }
        }
        Err(self.failed(last.unwrap_or_else(|| "no URL configured".into())))
    }

    /// A connection bound as the service account, from the pool or new.
    async fn service(&self) -> Result<Ldap, DirectoryError> {
        loop {
            let pooled = lock(&self.idle).pop_front();
            match pooled {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok(l);
                    }
                }
                None => break,
            }
        }
        let mut ldap = self.connect().await?;
        let r = ldap.simple_bind(&self.config.bind_dn, self.password.expose()).await.map_err(|e| self.failed(e))?;
        if r.rc != 0 {
            return Err(self.failed(format!("service account bind refused (result {}: {})", r.rc, r.text)));
        }
        Ok(ldap)
    }

    fn give_back(&self, ldap: Ldap) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.config.pool_size {
            idle.push_back(ldap);
        }
    }

    /// Finds a user and everything policies need about them.
    pub async fn lookup(&self, user: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        let _permit = self.permits.acquire().await.map_err(|e| self.failed(e))?;
        let mut ldap = self.service().await?;
        let result = self.lookup_on(&mut ldap, user).await;
        if result.is_ok() {
            self.give_back(ldap);
        }
        result
    }

    async fn lookup_on(&self, ldap: &mut Ldap, user: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        let filter = self.config.user_filter.replace("{user}", &ldap_escape(user));
        let mut attrs = vec![
            "memberOf".to_string(),
            "userAccountControl".into(),
            "accountExpires".into(),
            "lockoutTime".into(),
            "pwdAccountLockedTime".into(),
            "shadowExpire".into(),
            self.config.dialin_attribute.clone(),
            "sAMAccountName".into(),
            "uid".into(),
        ];
        attrs.extend(self.config.nt_hash_attribute.clone());
        let entries = self.search(ldap, &self.config.base_dn, &filter, &attrs).await?;
        let entry = match entries.len() {
            0 => return Ok(None),
            1 => entries.into_iter().next().unwrap_or_else(|| unreachable!()),
            n => return Err(self.failed(format!("user filter matched {n} entries for one name"))),
        };
        let attr = |name: &str| -> Option<&str> {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
                .map(String::as_str)
        };
        let now = u64::try_from(crate::now_unix()).unwrap_or(0);
        let uac = attr("userAccountControl").and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let expired_ad = attr("accountExpires").and_then(|v| v.parse::<u64>().ok()).is_some_and(|ft| {
            // FILETIME: 100 ns since 1601; 0 and 2^63-1 mean never.
            ft != 0 && ft != i64::MAX as u64 && ft / 10_000_000 < now + 11_644_473_600
        });
        let expired_shadow = attr("shadowExpire")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|days| days >= 0 && (days as u64) * 86_400 <= now);
        let locked = attr("lockoutTime").and_then(|v| v.parse::<u64>().ok()).is_some_and(|t| t != 0)
            || attr("pwdAccountLockedTime").is_some()
            || uac & 0x10 != 0;
        let nt_hash = self.config.nt_hash_attribute.as_deref().and_then(&attr).and_then(parse_nt_hash);
        let dialin = match attr(&self.config.dialin_attribute).map(str::to_ascii_uppercase).as_deref() {
            Some("TRUE") => Some(true),
            Some("FALSE") => Some(false),
            _ => None,
        };
        let member_of: Vec<String> = entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let groups = self.groups(ldap, &entry.dn, &member_of).await?;
        Ok(Some(DirectoryUser {
            dn: entry.dn.clone(),
            login: attr("sAMAccountName").or_else(|| attr("uid")).map(str::to_lowercase),
            groups,
            nt_hash,
            disabled: uac & 0x2 != 0,
            locked,
            expired: expired_ad || expired_shadow,
            dialin,
        }))
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let result = ldap.search(base, Scope::Subtree, filter, attrs).await.map_err(|e| self.failed(e))?;
        let (entries, r) = result.success().map_err(|e| self.failed(e))?;
        let _ = r;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    async fn groups(&self, ldap: &mut Ldap, dn: &str, member_of: &[String]) -> Result<Vec<String>, DirectoryError> {
        let base = self.config.group_base_dn.clone().unwrap_or_else(|| self.config.base_dn.clone());
        let name_attr = vec![self.config.group_name_attribute.clone()];
        let name_of = |e: &SearchEntry| -> Option<String> {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&self.config.group_name_attribute))
                .and_then(|(_, v)| v.first().cloned())
        };
        let mut names = Vec::new();
        match self.config.group_membership {
            GroupMembership::MemberOf => {
                names.extend(member_of.iter().filter_map(|g| rdn_value(g)));
            }
            GroupMembership::InChain => {
                let filter =
                    format!("(&{}(member:1.2.840.113556.1.4.1941:={}))", self.config.group_filter, ldap_escape(dn));
                names.extend(self.search(ldap, &base, &filter, &name_attr).await?.iter().filter_map(name_of));
            }
            GroupMembership::Search => {
                let mut seen = HashSet::new();
                let mut frontier = vec![dn.to_string()];
                for _ in 0..MAX_GROUP_DEPTH {
                    let mut next = Vec::new();
                    for member in &frontier {
                        let filter = format!(
                            "(&{}(|(member={m})(uniqueMember={m})))",
                            self.config.group_filter,
                            m = ldap_escape(member.as_str())
                        );
                        for g in self.search(ldap, &base, &filter, &name_attr).await? {
                            if seen.len() < MAX_GROUPS && seen.insert(g.dn.to_ascii_lowercase()) {
                                names.extend(name_of(&g));
                                next.push(g.dn);
                            }
                        }
                    }
                    if next.is_empty() {
                        break;
                    }
                    frontier = next;
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Checks a password by binding as the user on a fresh connection. An empty
    /// password is refused without asking: LDAP would treat it as an anonymous bind.
    pub async fn check_password(&self, dn: &str, password: &[u8]) -> Result<BindOutcome, DirectoryError> {
        let Ok(password) = std::str::from_utf8(password) else { return Ok(BindOutcome::WrongPassword) };
        if password.is_empty() || dn.is_empty() {
            return Ok(BindOutcome::WrongPassword);
        }
        let _permit = self.permits.acquire().await.map_err(|e| self.failed(e))?;
        let mut ldap = self.connect().await?;
        let r = ldap.simple_bind(dn, password).await.map_err(|e| self.failed(e))?;
        let _ = ldap.unbind().await;
        Ok(match r.rc {
            0 => BindOutcome::Ok,
            49 => bind_refusal(&r.text),
            rc => return Err(self.failed(format!("user bind failed (result {rc}: {})", r.text))),
        })
    }
}

/// Active Directory explains an invalidCredentials bind in its diagnostic text:
/// `data 52e` wrong password, `533` disabled, `775` locked, `701`/`532`/`773` expired.
fn bind_refusal(text: &str) -> BindOutcome {
    let code = text.split("data ").nth(1).and_then(|t| t.split([',', ' ']).next()).unwrap_or("");
    match code {
        "533" => BindOutcome::Disabled,
        "775" => BindOutcome::Locked,
        "701" | "532" | "773" => BindOutcome::Expired,
        _ => BindOutcome::WrongPassword,
    }
}

fn parse_nt_hash(v: &str) -> Option<[u8; 16]> {
    let v = v.trim();
    if v.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The value of a DN's first RDN (`CN=VPN Users,OU=Groups,...` → `VPN Users`).
fn rdn_value(dn: &str) -> Option<String> {
    let first = dn.split(',').next()?;
    let (_, v) = first.split_once('=')?;
    Some(v.trim().to_string())
}

fn client_tls(config: &LdapConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_certificate {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("ldap {:?}: {}: {e}", config.name, path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("ldap {:?}: {}: {e}", config.name, path.display()))?;
                roots.add(cert).map_err(|e| format!("ldap {:?}: {}: {e}", config.name, path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_directory_bind_refusals() {
        let t = |code: &str| {
            bind_refusal(&format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
            ))
        };
        assert_eq!(t("52e"), BindOutcome::WrongPassword);
        assert_eq!(t("533"), BindOutcome::Disabled);
        assert_eq!(t("775"), BindOutcome::Locked);
        assert_eq!(t("701"), BindOutcome::Expired);
        assert_eq!(bind_refusal(""), BindOutcome::WrongPassword);
    }

    #[test]
    fn nt_hash_and_rdn_parsing() {
        assert_eq!(parse_nt_hash("8846F7EAEE8FB117AD06BDD830B7586C").map(|h| h[0]), Some(0x88));
        assert_eq!(parse_nt_hash("xyz"), None);
        assert_eq!(parse_nt_hash("8846F7EAEE8FB117AD06BDD830B7586Z"), None);
        assert_eq!(rdn_value("CN=VPN Users,OU=Groups,DC=example,DC=com").as_deref(), Some("VPN Users"));
    }
}
