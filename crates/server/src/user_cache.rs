//! Local user records kept in memory between requests, so a cached PAP login costs no
//! database work.
//!
//! Every commit to `users.db` (the CLI's included) changes the size or modification
//! time of the database or its WAL. The cache compares them at most once a millisecond
//! and forgets everything when they differ: a change made while the server runs takes
//! effect for requests arriving a millisecond after its commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use portcullis_storage::User;

use crate::lock;

/// Most time between two looks at the database files.
const RECHECK: Duration = Duration::from_millis(1);
/// Most users held.
const CAPACITY: usize = 100_000;

/// Size and modification time of the database and its WAL.
type Signature = [(u64, Option<SystemTime>); 2];

/// Users by the name they were looked up with (`None`: no such user).
#[derive(Debug)]
pub struct UserCache {
    files: [PathBuf; 2],
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked: Option<Instant>,
    signature: Signature,
    users: HashMap<String, Option<Arc<User>>>,
}

impl UserCache {
    /// A cache of `<data_dir>/users.db`.
    pub fn new(data_dir: &Path) -> Self {
        let db = data_dir.join("users.db");
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        Self { files: [db, PathBuf::from(wal)], state: Mutex::new(State::default()) }
    }

    /// The user, from memory while the database is unchanged, else from `fetch`.
    pub fn user(
        &self,
        name: &str,
        fetch: impl FnOnce(&str) -> Result<Option<User>, String>,
    ) -> Result<Option<Arc<User>>, String> {
        let now = Instant::now();
        {
            let mut state = lock(&self.state);
            if state.checked.is_none_or(|t| now.duration_since(t) >= RECHECK) {
                let signature = self.signature();
                if signature != state.signature || state.users.len() >= CAPACITY {
                    state.users.clear();
                    state.signature = signature;
                }
                state.checked = Some(now);
            }
            if let Some(u) = state.users.get(name) {
                return Ok(u.clone());
            }
        }
        // Read before the fetch: a commit racing with it changes the files again, and
        // the next look forgets what this fetch stored.
        let user = fetch(name)?.map(Arc::new);
        lock(&self.state).users.insert(name.to_string(), user.clone());
        Ok(user)
    }

    fn signature(&self) -> Signature {
        self.files.each_ref().map(|p| std::fs::metadata(p).map_or((0, None), |m| (m.len(), m.modified().ok())))
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
        let cache = UserCache::new(dir.path());
        let fetch = |n: &str| server.user(n).map_err(|e| e.to_string());
        assert!(!cache.user("alice", fetch).unwrap().unwrap().disabled);
        assert!(cache.user("bob", fetch).unwrap().is_none());
        cli.put_user(&user("alice", true)).unwrap();
        cli.put_user(&user("bob", false)).unwrap();
        std::thread::sleep(RECHECK * 2);
        assert!(cache.user("alice", fetch).unwrap().unwrap().disabled);
        assert!(cache.user("bob", fetch).unwrap().is_some());
        cli.delete_user("bob").unwrap();
        std::thread::sleep(RECHECK * 2);
        assert!(cache.user("bob", fetch).unwrap().is_none());
    }

    #[test]
    fn an_unchanged_database_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut cli = SqliteUsers::open(dir.path()).unwrap();
        cli.put_user(&user("alice", false)).unwrap();
        let cache = UserCache::new(dir.path());
        let reads = std::cell::Cell::new(0);
        let fetch = |n: &str| {
            reads.set(reads.get() + 1);
            cli.user(n).map_err(|e| e.to_string())
        };
        for _ in 0..100 {
            assert!(cache.user("alice", fetch).unwrap().is_some());
        }
        assert_eq!(reads.get(), 1);
    }
}
