//! The one error type of the RADIUS codec.

/// Everything that can go wrong while decoding, verifying or encoding RADIUS data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The datagram is shorter than the 20-octet header.
    #[error("datagram of {len} octets is shorter than the 20-octet RADIUS header")]
    TooShort { len: usize },
    /// The Length field is outside the range the RFC allows for this code.
    #[error("Length field {length} is outside {min}..={max}")]
    BadLength { length: usize, min: usize, max: usize },
    /// The datagram holds fewer octets than its Length field claims.
    #[error("Length field says {length} octets but the datagram has only {received}")]
    Truncated { length: usize, received: usize },
    /// The Code octet is not a RADIUS code this implementation knows.
    #[error("unknown RADIUS code {0}")]
    UnknownCode(u8),
    /// An attribute's Length octet is below 2.
    #[error("attribute {typ} at offset {at} has invalid length {len}")]
    AttributeTooShort { at: usize, typ: u8, len: u8 },
    /// An attribute runs past the end of the packet.
    #[error("attribute {typ} at offset {at} with length {len} overruns the packet")]
    AttributeOverrun { at: usize, typ: u8, len: u8 },
    /// A Vendor-Specific attribute is malformed.
    #[error("malformed Vendor-Specific attribute: {0}")]
    BadVendorSpecific(&'static str),
    /// An attribute value does not fit in one attribute (more than 253 octets).
    #[error("attribute value of {len} octets exceeds 253")]
    ValueTooLong { len: usize },
    /// The encoded packet would exceed the maximum RADIUS length.
    #[error("encoded packet of {len} octets exceeds {max}")]
    PacketTooLong { len: usize, max: usize },
    /// The Request or Response Authenticator does not match the shared secret.
    #[error("authenticator does not verify (wrong shared secret?)")]
    BadAuthenticator,
    /// The Message-Authenticator attribute does not verify.
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    /// A Message-Authenticator was required but is absent.
    #[error("Message-Authenticator is required but absent")]
    MissingMessageAuthenticator,
    /// A value does not have the shape its data type requires.
    #[error("value of {len} octets is not a valid {data_type}")]
    BadValue { data_type: &'static str, len: usize },
    /// A hidden (encrypted) attribute has an impossible length.
    #[error("hidden attribute has invalid length {len}")]
    BadHiddenLength { len: usize },
    /// A password is longer than User-Password can carry (128 octets).
    #[error("password of {len} octets exceeds 128")]
    PasswordTooLong { len: usize },
}
