//! MS-CHAPv2 in RADIUS attributes (RFC 2548, RFC 2759): MS-CHAP-Challenge and
//! MS-CHAP2-Response, against the account's NT hash or, for directories without one,
//! by the domain controller through `ntlm_auth` — asked about the looked-up account in
//! the configured domain, never about a domain the User-Name carries.

use portcullis_auth::mschap;

use super::{Attempt, Verdict};
use crate::auth::decision::{Identity, Refusal};
use crate::auth::reply::{MICROSOFT, MS_CHAP_CHALLENGE, MS_CHAP2_RESPONSE};

pub(super) fn check(a: &Attempt<'_>, identity: Identity) -> Verdict {
    let challenge: Option<[u8; 16]> =
        a.packet.vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE).and_then(|c| c.try_into().ok());
    let response = a.packet.vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE).unwrap_or_default();
    let ident = response.first().copied().unwrap_or(0);
    // The peer computed its response over the User-Name (without a domain prefix).
    let user = a.user_raw;
    if let Some(hash) = identity.account.nt_hash {
        return match challenge.and_then(|c| mschap::verify_response(&hash, &c, response, user)) {
            Some(success) => Verdict::Ok { identity, mschap: Some(success), ident },
            None => super::wrong_password(identity),
        };
    }
    let Some(ntlm) = identity.route.store.ntlm() else {
        return super::fail(identity, Refusal::failed("no NT hash for this user (the store has none)"));
    };
    let (Some(c), Some(r)) = (challenge, <&[u8; 50]>::try_from(response).ok()) else {
        return super::fail(identity, Refusal::failed("malformed MS-CHAP2-Response"));
    };
    let peer: [u8; 16] = r[2..18].try_into().unwrap_or_default();
    let nt: [u8; 24] = r[26..50].try_into().unwrap_or_default();
    let hash = mschap::challenge_hash(&peer, &c, user);
    match ntlm.verify(identity.name(), &hash, &nt) {
        Ok(hash_hash) => {
            Verdict::Ok { identity, mschap: Some(mschap::success_from_hash_hash(&hash_hash, &nt, &hash)), ident }
        }
        Err((code, error, why)) => super::fail(identity, Refusal::new(code, error, why)),
    }
}
