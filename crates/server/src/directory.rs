//! Which user store answers a request (connection-request policies) and what it says
//! about the account, in one shape for local users and directories.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_accounting::canonical_user;
use portcullis_auth::policy::glob;
use portcullis_storage::{SqliteUsers, UserStore};

use crate::config::ConnectionRequestPolicy;
use crate::ldap::{BindOutcome, DirectoryError, LdapStore};
use crate::lock;

/// An account, whichever store holds it.
#[derive(Debug, Clone, Default)]
pub struct Account {
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

/// Where a request's user is looked up.
#[derive(Debug, Clone)]
pub enum Store {
    Local,
    Ldap(Arc<LdapStore>),
}

/// The connection-request decision for one request.
#[derive(Debug, Clone)]
pub struct Route {
    pub store: Store,
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
        matches!(self.store, Store::Ldap(_))
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
        let mut router = Self {
            policies: config.connection_request_policies.clone(),
            strip_realm: config.auth.strip_realm,
            ..Self::default()
        };
        for l in &config.ldap {
            router.ldap.insert(l.name.clone(), Arc::new(LdapStore::new(l.clone())?));
        }
        Ok(router)
    }
}

/// Connection-request policies and the stores they name.
#[derive(Debug, Default)]
pub struct Router {
    pub policies: Vec<ConnectionRequestPolicy>,
    pub ldap: HashMap<String, Arc<LdapStore>>,
    pub strip_realm: bool,
}

impl Router {
    /// Chooses the store; `Err` carries the explanation for a reason-49 rejection.
    pub fn route(&self, client: &str, user_raw: &str, nas_identifier: Option<&str>) -> Result<Route, String> {
        if self.policies.is_empty() {
            return Ok(Route { store: Store::Local, strip_realm: self.strip_realm, policy: None });
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
            let store = match p.user_store.as_str() {
                "local" => Store::Local,
                name => match self.ldap.get(name) {
                    Some(l) => Store::Ldap(Arc::clone(l)),
                    None => return Err(format!("user store {name:?} is not configured")),
                },
            };
            return Ok(Route {
                store,
                strip_realm: p.strip_realm.unwrap_or(self.strip_realm),
                policy: Some(p.name.clone()),
            });
        }
        Err(format!("no connection request policy matches realm {realm:?}"))
    }
}

/// Looks an account up. Directory lookups block; call them off the I/O tasks.
pub fn lookup(users: &std::sync::Mutex<SqliteUsers>, route: &Route, name: &str) -> Result<Option<Account>, String> {
    match &route.store {
        Store::Local => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let record = lock(users).user(name).map_err(|e| e.to_string())?;
            Ok(record.map(|u| Account {
                expired: u.expires_at.is_some_and(|t| t <= now as i64),
                groups: u.groups,
                nt_hash: u.nt_hash,
                reversible: u.reversible,
                password_hash: u.password_hash,
                disabled: u.disabled,
                locked: false,
                dialin: None,
                generation: u64::try_from(u.generation).unwrap_or(0),
                dn: None,
            }))
        }
        Store::Ldap(store) => {
            let found = store.block_on(store.lookup(name)).map_err(|e| e.to_string())?;
            Ok(found.map(|d| Account {
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
    }
}

/// Checks a PAP password against a directory account by binding as the user.
pub fn directory_password(
    store: &LdapStore,
    account: &Account,
    password: &[u8],
) -> Result<BindOutcome, DirectoryError> {
    let dn = account.dn.clone().unwrap_or_default();
    store.block_on(store.check_password(&dn, password))
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
