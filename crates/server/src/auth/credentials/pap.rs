//! PAP: the User-Password (RFC 2865 §5.2) against the account's Argon2id hash through
//! the credential cache, or by a bind to the directory every time.

use std::time::Instant;

use portcullis_radius::{attr, unhide_user_password};

use super::{Attempt, Verdict, password_verdict};
use crate::auth::decision::{Identity, Refusal};
use crate::lock;

pub(super) fn check(a: &Attempt<'_>, identity: Identity) -> Verdict {
    let Some(hidden) = a.packet.attribute(attr::USER_PASSWORD) else {
        return super::fail(identity, Refusal::failed("no password"));
    };
    let Ok(mut password) = unhide_user_password(hidden, &a.client.secret, &a.packet.authenticator()) else {
        return super::fail(identity, Refusal::failed("malformed User-Password"));
    };
    if let Some(p) = a.password_without_code {
        password = p.to_vec().into();
    }
    if a.route.is_remote() {
        // Directories decide every time (a changed password takes effect at once).
        let check = identity.route.store.check_password(&identity.account, &password);
        return password_verdict(check, identity);
    }
    let generation = identity.account.generation;
    let credentials = &a.shared.credentials;
    if lock(credentials).check(Instant::now(), identity.key(), &password, generation) {
        return Verdict::Ok { identity, mschap: None, ident: 0 };
    }
    if !a.allow_slow && identity.account.password_hash.is_some() {
        return Verdict::NeedsSlowPath;
    }
    let check = identity.route.store.check_password(&identity.account, &password);
    let key = identity.key().to_string();
    let verdict = password_verdict(check, identity);
    if matches!(verdict, Verdict::Ok { .. }) {
        lock(credentials).insert(Instant::now(), &key, &password, generation);
    }
    verdict
}
