//! Sans-IO RADIUS: decode received datagrams into borrowed views, verify them against a
//! shared secret, and encode replies through a builder.
//!
//! This crate has no sockets, no clock and no random number generator: callers pass in
//! bytes, secrets and any random octets. It implements RFC 2865, 2866, 2868, 2869,
//! 3162, 3579, 5176 and 5997 wire rules and the FreeRADIUS dictionary format.

mod builder;
mod crypto;
pub mod dedup;
pub mod dictionary;
mod error;
mod packet;
mod value;
mod verify;

pub mod attr;

pub use builder::PacketBuilder;
pub use crypto::{
    SharedSecret, find_message_authenticator, hide_user_password, message_authenticator_basis, packet_md5,
    salt_decrypt, salt_encrypt, unhide_user_password, verify_message_authenticator, verify_request_authenticator,
    verify_response_authenticator,
};
pub use dictionary::{AttributeDef, AttributeKey, Dictionary, DictionaryError, Encryption, VendorDef};
pub use error::Error;
pub use packet::{
    Attribute, Attributes, Authenticator, Code, HEADER_LEN, Identifier, MAX_ACCOUNTING_LEN, MAX_PACKET_LEN,
    MAX_VALUE_LEN, Packet, SubAttributes, VendorSpecific,
};
pub use value::{DataType, Value, split_tag};
pub use verify::{VerifiedRequest, VerifyPolicy};

/// Case-insensitive glob with `*` and `?`.
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
