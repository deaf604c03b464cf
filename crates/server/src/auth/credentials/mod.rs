//! The credentials stage, one module per method that arrives outside EAP (PAP, CHAP,
//! MS-CHAPv2; EAP-MSCHAPv2 and PEAP are conversations, in `auth::eap`). Each looks the
//! account up once ([`super::identity::resolve`]) and proves the request's credentials
//! against that account only.

mod chap;
mod mschapv2;
mod pap;

use portcullis_auth::mschap::{MschapError, Mschapv2Success};
use portcullis_auth::policy::{Method, reason};
use portcullis_radius::Packet;

use super::context::AuthShared;
use super::decision::{Identity, Refusal};
use super::identity::resolve;
use crate::clients::Client;
use crate::directory::{PasswordCheck, Route};

/// What the credential check concluded.
pub(crate) enum Verdict {
    Ok {
        identity: Identity,
        mschap: Option<Mschapv2Success>,
        ident: u8,
    },
    /// `identity`: the account, when the refusal came after it was found.
    Fail {
        refusal: Refusal,
        identity: Option<Identity>,
    },
    /// Only an Argon2 verification or a directory can tell; retry on the blocking pool.
    NeedsSlowPath,
}

/// One request's credentials and where to check them.
pub(crate) struct Attempt<'a> {
    pub shared: &'a AuthShared,
    pub client: &'a Client,
    pub packet: &'a Packet<'a>,
    pub route: &'a Route,
    pub user_raw: &'a str,
    pub allow_slow: bool,
    /// PAP with `password<sep>code`: the password without the code.
    pub password_without_code: Option<&'a [u8]>,
}

/// Checks the credentials of `method` for the account the User-Name names.
pub(crate) fn check(a: &Attempt<'_>, method: Method) -> Verdict {
    if a.route.is_remote() && !a.allow_slow {
        return Verdict::NeedsSlowPath;
    }
    let identity = match resolve(a.route, a.user_raw) {
        Ok(i) => i,
        Err(refusal) => return Verdict::Fail { refusal, identity: None },
    };
    match method {
        Method::Pap => pap::check(a, identity),
        Method::Chap => chap::check(a, identity),
        Method::Mschapv2 => mschapv2::check(a, identity),
        Method::EapMschapv2 | Method::Peap => fail(
            identity,
            Refusal::new(reason::METHOD_NOT_ALLOWED, MschapError::AuthenticationFailure, "EAP arrives in EAP-Message"),
        ),
    }
}

fn fail(identity: Identity, refusal: Refusal) -> Verdict {
    Verdict::Fail { refusal, identity: Some(identity) }
}

fn wrong_password(identity: Identity) -> Verdict {
    fail(identity, Refusal::failed("wrong password"))
}

/// The verdict for a password check by the store.
fn password_verdict(check: Result<PasswordCheck, String>, identity: Identity) -> Verdict {
    let refuse = |reason: u32, e: MschapError, message: &str| Refusal::new(reason, e, message);
    let refusal = match check {
        Ok(PasswordCheck::Ok) => return Verdict::Ok { identity, mschap: None, ident: 0 },
        Ok(PasswordCheck::Wrong) => Refusal::failed("wrong password"),
        Ok(PasswordCheck::Disabled) => {
            refuse(reason::ACCOUNT_DISABLED, MschapError::AccountDisabled, "account disabled")
        }
        Ok(PasswordCheck::Locked) => refuse(reason::ACCOUNT_LOCKED, MschapError::AccountDisabled, "account locked out"),
        Ok(PasswordCheck::Expired) => {
            refuse(reason::ACCOUNT_EXPIRED, MschapError::AccountDisabled, "account or password expired")
        }
        Err(e) => {
            tracing::error!(error = %e, "password check failed");
            Refusal::failed(format!("user store unavailable: {e}"))
        }
    };
    fail(identity, refusal)
}
