//! Local user records kept in memory between requests, so a cached PAP login costs no
//! database work.
//!
//! Every commit to `users.db` by another connection (the CLI's) changes SQLite's
//! `data_version`. The cache reads it at most once a millisecond and forgets everything
//! when it changed: a change made while the server runs takes effect for requests
//! arriving a millisecond after its commit. (File sizes and times are not enough: a
//! reused WAL keeps its size, and a commit within one clock tick keeps the time.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_storage::User;

use crate::lock;

/// Most time between two looks at the database files.
const RECHECK: Duration = Duration::from_millis(1);
/// Most users held.
const CAPACITY: usize = 100_000;

/// Users by the name they were looked up with (`None`: no such user).
#[derive(Debug, Default)]
pub struct UserCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked: Option<Instant>,
    version: Option<i64>,
    users: HashMap<String, Option<Arc<User>>>,
}

impl UserCache {
    /// The user, from memory while the database's version is unchanged, else from
    /// `load`, which returns the version it read under the same lock as the user. A
    /// version that cannot be read empties the cache and fails the lookup; a record
    /// read under another version than the cache holds is returned but not kept (a
    /// commit raced with it).
    pub fn user(
        &self,
        name: &str,
        version: impl FnOnce() -> Result<i64, String>,
        load: impl FnOnce(&str) -> Result<(i64, Option<User>), String>,
    ) -> Result<Option<Arc<User>>, String> {
        let now = Instant::now();
        {
            let mut state = lock(&self.state);
            if state.checked.is_none_or(|t| now.duration_since(t) >= RECHECK) {
                let v = version();
                if v.as_ref().ok() != state.version.as_ref() || state.users.len() >= CAPACITY {
                    state.users.clear();
                    state.version = v.clone().ok();
                }
                v?;
                state.checked = Some(now);
            }
            if let Some(u) = state.users.get(name) {
                return Ok(u.clone());
            }
        }
        let (read_at, user) = load(name)?;
        let user = user.map(Arc::new);
        let mut state = lock(&self.state);
        if state.version == Some(read_at) {
            state.users.insert(name.to_string(), user.clone());
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use portcullis_storage::{SqliteUsers, UserStore};

    use super::*;

    fn user(name: &str, disabled: bool) -> User {
        User {
            name: name.into(),
            password_hash: None,
            nt_hash: None,
            reversible: None,
            groups: vec![],
            disabled,
            expires_at: None,
            generation: 0,
        }
    }

    #[test]
    fn a_change_from_another_connection_is_seen_after_the_recheck_interval() {
        let dir = tempfile::tempdir().unwrap();
        let server = SqliteUsers::open(dir.path()).unwrap();
        let mut cli = SqliteUsers::open(dir.path()).unwrap();
        cli.put_user(&user("alice", false)).unwrap();
        let cache = UserCache::default();
        let version = || server.data_version().map_err(|e| e.to_string());
        let fetch = |n: &str| Ok((version()?, server.user(n).map_err(|e| e.to_string())?));
        assert!(!cache.user("alice", version, fetch).unwrap().unwrap().disabled);
        assert!(cache.user("bob", version, fetch).unwrap().is_none());
        // Commits back to back, with no time for file sizes or times to tell them apart.
        for _ in 0..20 {
            cli.put_user(&user("alice", true)).unwrap();
            std::thread::sleep(RECHECK * 2);
            assert!(cache.user("alice", version, fetch).unwrap().unwrap().disabled);
            cli.put_user(&user("alice", false)).unwrap();
            std::thread::sleep(RECHECK * 2);
            assert!(!cache.user("alice", version, fetch).unwrap().unwrap().disabled);
        }
        cli.put_user(&user("bob", false)).unwrap();
        std::thread::sleep(RECHECK * 2);
        assert!(cache.user("bob", version, fetch).unwrap().is_some());
        cli.delete_user("bob").unwrap();
        std::thread::sleep(RECHECK * 2);
        assert!(cache.user("bob", version, fetch).unwrap().is_none());
    }

    #[test]
    fn an_unchanged_database_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut cli = SqliteUsers::open(dir.path()).unwrap();
        cli.put_user(&user("alice", false)).unwrap();
        let cache = UserCache::default();
        let reads = std::cell::Cell::new(0);
        let fetch = |n: &str| {
            reads.set(reads.get() + 1);
            Ok((7, cli.user(n).map_err(|e| e.to_string())?))
        };
        let version = || Ok(7);
        for _ in 0..100 {
            assert!(cache.user("alice", version, fetch).unwrap().is_some());
        }
        assert_eq!(reads.get(), 1);
    }

    #[test]
    fn a_fetch_racing_with_a_commit_does_not_keep_a_disabled_user_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let server = SqliteUsers::open(dir.path()).unwrap();
        let cli = std::cell::RefCell::new(SqliteUsers::open(dir.path()).unwrap());
        cli.borrow_mut().put_user(&user("alice", false)).unwrap();
        let cache = UserCache::default();
        let version = || server.data_version().map_err(|e| e.to_string());
        let load = |n: &str| Ok((version()?, server.user(n).map_err(|e| e.to_string())?));
        assert!(cache.user("nobody", version, load).unwrap().is_none());
        std::thread::sleep(RECHECK * 3);
        // Request A reads alice (enabled); before it stores the record the administrator
        // disables her and request B looks at the database and sees the new version.
        let racing = |n: &str| {
            let read = load(n);
            cli.borrow_mut().put_user(&user("alice", true)).unwrap();
            std::thread::sleep(RECHECK * 3);
            assert!(cache.user("bob", version, load).unwrap().is_none());
            read
        };
        assert!(!cache.user("alice", version, racing).unwrap().unwrap().disabled);
        for _ in 0..5 {
            std::thread::sleep(RECHECK * 3);
            assert!(cache.user("alice", version, load).unwrap().unwrap().disabled, "the stale record was kept");
        }
    }
}
