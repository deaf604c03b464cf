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
