//! Which user store answers a request (connection-request policies) and what it says
//! about the account, in one shape for local users and directories.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_accounting::canonical_user;
use portcullis_auth::policy::glob;
use portcullis_storage::{SqliteUsers, UserStore};

use crate::config::ConnectionRequestPolicy;
use crate::ldap::{BindOutcome, LdapStore};
use crate::lock;

/// An account, whichever store holds it.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// The stable identity of the account in its store: the local user's name, or
    /// `ldap:<store>:<DN>` (lower case) for a directory entry. Second factors,
    /// lockouts and push approvals are keyed by it, never by the name a peer typed.
    pub key: String,
    /// The account's own login name (the local user's name, the entry's
    /// `sAMAccountName` or `uid`): what `ntlm_auth` is asked about and what the audit
    /// trail and profiles record.
    pub name: String,
    pub groups: Vec<String>,
    pub nt_hash: Option<[u8; 16]>,
    /// The password itself (local users who opted into CHAP).
    pub reversible: Option<String>,
    /// Argon2id PHC string (local users).
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub expired: bool,
    pub locked: bool,
    /// Dial-in permission from the directory.
    pub dialin: Option<bool>,
    /// Changes whenever a local user's credentials or status change.
    pub generation: u64,
    /// The directory entry (directories only).
    pub dn: Option<String>,
}

/// Outcome of a PAP password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Ok,
    Wrong,
    /// The store refused the account itself while checking (directories say so at bind).
    Disabled,
    Locked,
    Expired,
}

/// A user store: the local users or a directory. Methods may block (directories wait
/// on the network); callers run remote stores off the I/O tasks.
pub trait UserDirectory: Send + Sync + std::fmt::Debug {
    /// The name connection-request policies use (`local` for the local users).
    fn name(&self) -> &str;
    /// Whether calls wait on the network.
    fn is_remote(&self) -> bool;
    /// The account with this name, if the store has one.
    fn lookup(&self, name: &str) -> Result<Option<Account>, String>;
    /// Checks a PAP password against an account this store returned.
    fn check_password(&self, account: &Account, password: &[u8]) -> Result<PasswordCheck, String>;
    /// Samba's `ntlm_auth`, for MS-CHAPv2 where the store has no NT hash.
    fn ntlm(&self) -> Option<crate::ntlm::NtlmAuth> {
        None
    }
}

/// The local users (`users.db`).
#[derive(Debug)]
pub struct LocalUsers(Mutex<SqliteUsers>, crate::user_cache::UserCache);

impl LocalUsers {
    /// Opens the local user database in the data directory.
    pub fn open(data_dir: &std::path::Path) -> Result<Self, String> {
        let cache = crate::user_cache::UserCache::default();
        SqliteUsers::open(data_dir).map(|u| Self(Mutex::new(u), cache)).map_err(|e| e.to_string())
    }
}

impl UserDirectory for LocalUsers {
    fn name(&self) -> &str {
        "local"
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn lookup(&self, name: &str) -> Result<Option<Account>, String> {
        let now = crate::now_unix();
        let version = || lock(&self.0).data_version().map_err(|e| e.to_string());
        let load = |name: &str| {
            let users = lock(&self.0);
            let v = users.data_version().map_err(|e| e.to_string())?;
            Ok((v, users.user(name).map_err(|e| e.to_string())?))
        };
        let record = self.1.user(name, version, load)?;
        Ok(record.map(|u| Account {
            key: u.name.clone(),
            name: u.name.clone(),
            expired: u.expires_at.is_some_and(|t| t <= now),
            groups: u.groups.clone(),
            nt_hash: u.nt_hash,
            reversible: u.reversible.clone(),
            password_hash: u.password_hash.clone(),
            disabled: u.disabled,
            locked: false,
            dialin: None,
            generation: u64::try_from(u.generation).unwrap_or(0),
            dn: None,
        }))
    }

    /// Argon2id (slow by design); users with only an NT hash are checked against it.
    fn check_password(&self, account: &Account, password: &[u8]) -> Result<PasswordCheck, String> {
        let verified = match &account.password_hash {
            Some(h) => portcullis_auth::verify_password(h, password).unwrap_or(false),
            None => account.nt_hash.is_some_and(|h| {
                std::str::from_utf8(password).is_ok_and(|p| portcullis_auth::mschap::nt_password_hash(p) == h)
            }),
        };
        Ok(if verified { PasswordCheck::Ok } else { PasswordCheck::Wrong })
    }
}

impl UserDirectory for LdapStore {
    fn name(&self) -> &str {
        Self::name(self)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn lookup(&self, name: &str) -> Result<Option<Account>, String> {
        let found = self.block_on(Self::lookup(self, name)).map_err(|e| e.to_string())?;
        Ok(found.map(|d| Account {
            key: format!("ldap:{}:{}", Self::name(self), d.dn.to_lowercase()),
            name: d.login.unwrap_or_else(|| name.to_lowercase()),
            groups: d.groups,
            nt_hash: d.nt_hash,
            disabled: d.disabled,
            expired: d.expired,
            locked: d.locked,
            dialin: d.dialin,
            dn: Some(d.dn),
            ..Account::default()
        }))
    }

    fn check_password(&self, account: &Account, password: &[u8]) -> Result<PasswordCheck, String> {
        let dn = account.dn.clone().unwrap_or_default();
        let outcome = self.block_on(self.check_password(&dn, password)).map_err(|e| e.to_string())?;
        Ok(match outcome {
            BindOutcome::Ok => PasswordCheck::Ok,
            BindOutcome::WrongPassword => PasswordCheck::Wrong,
            BindOutcome::Disabled => PasswordCheck::Disabled,
            BindOutcome::Locked => PasswordCheck::Locked,
            BindOutcome::Expired => PasswordCheck::Expired,
        })
    }

    fn ntlm(&self) -> Option<crate::ntlm::NtlmAuth> {
        Self::ntlm(self)
    }
}

/// The connection-request decision for one request.
#[derive(Debug, Clone)]
pub struct Route {
    pub store: Arc<dyn UserDirectory>,
    pub strip_realm: bool,
    /// The deciding connection-request policy, if any are configured.
    pub policy: Option<String>,
}

impl Route {
    /// The name to look up for a user name as the peer gave it.
    pub fn lookup_name(&self, raw: &str) -> String {
        if self.strip_realm { canonical_user(raw) } else { raw.trim_matches(['\0', ' ']).to_lowercase() }
    }

    /// Whether lookups may block on the network (and so belong on the blocking pool).
    pub fn is_remote(&self) -> bool {
        self.store.is_remote()
    }
}

/// The realm of a user name: `DOMAIN\user` → `DOMAIN`, `user@realm` → `realm`, else "".
pub fn realm_of(raw: &str) -> &str {
    let s = raw.trim_matches(['\0', ' ']);
    if let Some((realm, _)) = s.split_once('\\') {
        return realm;
    }
    s.rsplit_once('@').map_or("", |(_, realm)| realm)
}

impl Router {
    /// The router a configuration describes. Directories need a tokio runtime.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let mut stores: HashMap<String, Arc<dyn UserDirectory>> = HashMap::new();
        stores.insert("local".into(), Arc::new(LocalUsers::open(&config.storage.data_dir)?));
        for l in &config.ldap {
            stores.insert(l.name.clone(), Arc::new(LdapStore::new(l.clone())?));
        }
        Ok(Self { policies: config.connection_request_policies.clone(), stores, strip_realm: config.auth.strip_realm })
    }
}

/// Connection-request policies and the stores they name.
#[derive(Debug)]
pub struct Router {
    pub policies: Vec<ConnectionRequestPolicy>,
    /// Every store by name, `local` included.
    pub stores: HashMap<String, Arc<dyn UserDirectory>>,
    pub strip_realm: bool,
}

impl Router {
    /// Chooses the store; `Err` carries the explanation for a reason-49 rejection.
    pub fn route(&self, client: &str, user_raw: &str, nas_identifier: Option<&str>) -> Result<Route, String> {
        let store =
            |name: &str| self.stores.get(name).cloned().ok_or_else(|| format!("user store {name:?} is not configured"));
        if self.policies.is_empty() {
            return Ok(Route { store: store("local")?, strip_realm: self.strip_realm, policy: None });
        }
        let realm = realm_of(user_raw);
        for p in &self.policies {
            if !p.clients.is_empty() && !p.clients.iter().any(|c| c == client) {
                continue;
            }
            if p.nas_identifier.as_deref().is_some_and(|pat| !glob(pat, nas_identifier.unwrap_or(""))) {
                continue;
            }
            if !p.realms.is_empty() && !p.realms.iter().any(|r| r.eq_ignore_ascii_case(realm)) {
                continue;
            }
            if !p.accept {
                return Err(format!("connection request policy {:?} rejects the request", p.name));
            }
            return Ok(Route {
                store: store(&p.user_store)?,
                strip_realm: p.strip_realm.unwrap_or(self.strip_realm),
                policy: Some(p.name.clone()),
            });
        }
        Err(format!("no connection request policy matches realm {realm:?}"))
    }

    /// The account an administrator names (enrolment, reset): in `store` when given,
    /// else in the one store the accepting connection-request policies for its realm
    /// can reach, whatever the client and NAS. A name that different policies would
    /// look up in different stores is an error (name the store), so a factor is never
    /// enrolled on an account the logins do not reach. Blocks on directories.
    pub fn account_for_admin(&self, user_raw: &str, store: Option<&str>) -> Result<Account, String> {
        let realm = realm_of(user_raw);
        let candidates: Vec<(&str, bool)> =
            if self.policies.is_empty() {
                vec![("local", self.strip_realm)]
            } else {
                let mut c: Vec<(&str, bool)> = Vec::new();
                for p in self.policies.iter().filter(|p| {
                    p.accept && (p.realms.is_empty() || p.realms.iter().any(|r| r.eq_ignore_ascii_case(realm)))
                }) {
                    if !c.iter().any(|(s, _)| *s == p.user_store) {
                        c.push((&p.user_store, p.strip_realm.unwrap_or(self.strip_realm)));
                    }
                }
                c
            };
        let (name, strip_realm) = match (store, candidates.as_slice()) {
            (Some(s), _) => (s, candidates.iter().find(|(c, _)| *c == s).map_or(self.strip_realm, |(_, r)| *r)),
            (None, [one]) => *one,
            (None, []) => return Err(format!("no connection request policy accepts realm {realm:?}")),
            (None, many) => {
                let names: Vec<&str> = many.iter().map(|(s, _)| *s).collect();
                return Err(format!(
                    "{user_raw:?} may be looked up in the user stores {names:?} depending on the client or NAS; \
                     name one with --store"
                ));
            }
        };
        let store = self.stores.get(name).cloned().ok_or_else(|| format!("user store {name:?} is not configured"))?;
        let route = Route { store, strip_realm, policy: None };
        let lookup = route.lookup_name(user_raw);
        route
            .store
            .lookup(&lookup)?
            .ok_or_else(|| format!("{lookup:?} is not an account in user store {:?}", route.store.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realms() {
        assert_eq!(realm_of("CONTOSO\\alice"), "CONTOSO");
        assert_eq!(realm_of("alice@contoso.com"), "contoso.com");
        assert_eq!(realm_of("alice"), "");
        assert_eq!(realm_of("a@b@c"), "c");
    }
}
