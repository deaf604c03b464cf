//! Authentication, as a pipeline whose stages import one way (each only from the ones
//! listed before it):
//!
//! - `context`, `decision`, `conversations`, `factor`, `target`: the shared state, the
//!   values the stages hand each other, EAP conversations between round trips, the
//!   second-factor service (key, database, enrolment), users' push targets;
//! - `reply`, `audit`: building answers and recording decisions;
//! - `identity`: connection-request policy (which store) and the one account lookup;
//! - `credentials` (PAP, CHAP, MS-CHAPv2) and `policy` (network policies);
//! - `push`, then `mfa`: the second factor; `pages`, the approval and enrolment pages
//!   (they prove approvals with `mfa`'s code check);
//! - `eap` (EAP-MSCHAPv2, PEAP), then `pipeline`, which runs the stages for one
//!   request, then `listener`, the UDP side.
//!
//! **Invariant:** the account decided by `identity` is the one every later stage uses —
//! its key for factors, lockouts and pushes, its own name for `ntlm_auth` and the audit
//! trail. Names a peer sends later (an MS-CHAPv2 Name, a PEAP inner identity, the
//! User-Name of a challenge answer) are checked against it, never used instead of it.

mod audit;
mod context;
mod conversations;
mod credentials;
mod decision;
mod eap;
pub mod factor;
mod identity;
mod listener;
mod mfa;
mod pages;
mod pipeline;
mod policy;
pub mod push;
mod reply;
pub mod target;

pub use context::{AuthShared, LiveAuth};
pub use conversations::EapTable;
pub use listener::{RECEIVERS_PER_SOCKET, serve};
pub use pages::router;
pub use reply::{encode_reply_attribute, validate_replies};

/// A new random key for the credential cache.
pub fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}
