//! Who a request is about, decided once: the connection-request policy picks the user
//! store from the name as the peer sent it, the store returns the account, and from
//! then on every stage — credentials, network policy, second factor, reply, audit —
//! uses that account (its stable key and its own login name), never a name a peer
//! sends later in the conversation.

use portcullis_accounting::canonical_user;
use portcullis_auth::mschap::MschapError;
use portcullis_auth::policy::reason;

use super::context::AuthShared;
use super::decision::{Identity, Refusal};
use crate::directory::{Account, Route};

/// The connection-request decision for a name as the peer sent it.
pub(crate) fn route(
    shared: &AuthShared,
    client: &str,
    user_raw: &str,
    nas_identifier: Option<&str>,
) -> Result<Route, Refusal> {
    shared
        .router
        .route(client, user_raw, nas_identifier)
        .map_err(|why| Refusal::new(reason::NO_CONNECTION_REQUEST_POLICY, MschapError::AuthenticationFailure, why))
}

/// The name to record for a request refused before an account was found.
pub(crate) fn typed_name(route: Option<&Route>, user_raw: &str) -> String {
    route.map_or_else(|| canonical_user(user_raw), |r| r.lookup_name(user_raw))
}

/// Looks up the account for `user_raw` in the routed store and refuses accounts that
/// may not log in at all (unknown, disabled, locked, expired). Blocks on directories.
pub(crate) fn resolve(route: &Route, user_raw: &str) -> Result<Identity, Refusal> {
    let account = match route.store.lookup(&route.lookup_name(user_raw)) {
        Ok(Some(a)) => a,
        Ok(None) => return Err(Refusal::new(reason::NO_SUCH_USER, MschapError::AuthenticationFailure, "no such user")),
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return Err(Refusal::failed(format!("user store unavailable: {e}")));
        }
    };
    if let Some((code, error, why)) = account_refusal(&account) {
        return Err(Refusal::new(code, error, why));
    }
    Ok(Identity { route: route.clone(), account })
}

/// Why an account may not log in at all, whatever its password: NPS reason code,
/// MS-CHAP error and explanation.
pub(crate) fn account_refusal(a: &Account) -> Option<(u32, MschapError, &'static str)> {
    if a.disabled {
        Some((reason::ACCOUNT_DISABLED, MschapError::AccountDisabled, "account disabled"))
    } else if a.locked {
        Some((reason::ACCOUNT_LOCKED, MschapError::AccountDisabled, "account locked out"))
    } else if a.expired {
        Some((reason::ACCOUNT_EXPIRED, MschapError::AccountDisabled, "account expired"))
    } else {
        None
    }
}
