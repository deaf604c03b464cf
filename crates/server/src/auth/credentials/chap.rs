//! CHAP (RFC 1994, RFC 2865 §5.3): needs the account's reversible password.

use portcullis_auth::verify_chap;
use portcullis_radius::attr;

use super::{Attempt, Verdict};
use crate::auth::decision::{Identity, Refusal};

pub(super) fn check(a: &Attempt<'_>, identity: Identity) -> Verdict {
    let Some(secret) = identity.account.reversible.clone() else {
        return super::fail(identity, Refusal::failed("CHAP needs a reversible password and this user has none"));
    };
    let chap = a.packet.attribute(attr::CHAP_PASSWORD).unwrap_or_default();
    let challenge =
        a.packet.attribute(attr::CHAP_CHALLENGE).map_or_else(|| a.packet.authenticator().0.to_vec(), <[u8]>::to_vec);
    if verify_chap(chap, secret.as_bytes(), &challenge) {
        Verdict::Ok { identity, mschap: None, ident: 0 }
    } else {
        super::wrong_password(identity)
    }
}
