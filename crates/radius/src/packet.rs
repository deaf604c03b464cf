//! Borrowed views over received packets: [`Packet`], [`Attribute`], [`VendorSpecific`].

use crate::Error;
use crate::attr::{EAP_MESSAGE, VENDOR_SPECIFIC};

/// RADIUS header length: Code, Identifier, Length, Authenticator.
pub const HEADER_LEN: usize = 20;
/// Maximum packet length for most codes (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
/// Maximum accounting packet length (RFC 2866 §3).
pub const MAX_ACCOUNTING_LEN: usize = 4095;
/// Maximum attribute value length (RFC 2865 §5: Length is one octet and includes the header).
pub const MAX_VALUE_LEN: usize = 253;

/// The RADIUS packet codes of RFC 2865, 2866, 5176, 5997 and 7930.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    StatusServer,
    StatusClient,
    DisconnectRequest,
    DisconnectAck,
    DisconnectNak,
    CoaRequest,
    CoaAck,
    CoaNak,
    ProtocolError,
}

impl Code {
    /// Every code, for tables and tests.
    pub const ALL: [Self; 15] = [
        Self::AccessRequest,
        Self::AccessAccept,
        Self::AccessReject,
        Self::AccountingRequest,
        Self::AccountingResponse,
        Self::AccessChallenge,
        Self::StatusServer,
        Self::StatusClient,
        Self::DisconnectRequest,
        Self::DisconnectAck,
        Self::DisconnectNak,
        Self::CoaRequest,
        Self::CoaAck,
        Self::CoaNak,
        Self::ProtocolError,
    ];

    /// The code's wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::AccessRequest => 1,
            Self::AccessAccept => 2,
            Self::AccessReject => 3,
            Self::AccountingRequest => 4,
            Self::AccountingResponse => 5,
            Self::AccessChallenge => 11,
            Self::StatusServer => 12,
            Self::StatusClient => 13,
            Self::DisconnectRequest => 40,
            Self::DisconnectAck => 41,
            Self::DisconnectNak => 42,
            Self::CoaRequest => 43,
            Self::CoaAck => 44,
            Self::CoaNak => 45,
            Self::ProtocolError => 52,
        }
    }

    /// The code for a wire value, or `None` for a value no RFC defines.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::AccessRequest,
            2 => Self::AccessAccept,
            3 => Self::AccessReject,
            4 => Self::AccountingRequest,
            5 => Self::AccountingResponse,
            11 => Self::AccessChallenge,
            12 => Self::StatusServer,
            13 => Self::StatusClient,
            40 => Self::DisconnectRequest,
            41 => Self::DisconnectAck,
            42 => Self::DisconnectNak,
            43 => Self::CoaRequest,
            44 => Self::CoaAck,
            45 => Self::CoaNak,
            52 => Self::ProtocolError,
            _ => return None,
        })
    }

    /// Largest Length this code may carry over UDP.
    pub const fn max_len(self) -> usize {
        match self {
            Self::AccountingRequest | Self::AccountingResponse => MAX_ACCOUNTING_LEN,
            _ => MAX_PACKET_LEN,
        }
    }

    /// Whether the Request Authenticator of this code is an MD5 over the packet
    /// (RFC 2866 §3, RFC 5176 §3) rather than random octets.
    pub const fn has_computed_request_authenticator(self) -> bool {
        matches!(self, Self::AccountingRequest | Self::DisconnectRequest | Self::CoaRequest)
    }

    /// Whether this code is a response to some request.
    pub const fn is_response(self) -> bool {
        matches!(
            self,
            Self::AccessAccept
                | Self::AccessReject
                | Self::AccessChallenge
                | Self::AccountingResponse
                | Self::DisconnectAck
                | Self::DisconnectNak
                | Self::CoaAck
                | Self::CoaNak
                | Self::ProtocolError
        )
    }

    /// The name the RFCs give this code.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AccessRequest => "Access-Request",
            Self::AccessAccept => "Access-Accept",
            Self::AccessReject => "Access-Reject",
            Self::AccountingRequest => "Accounting-Request",
            Self::AccountingResponse => "Accounting-Response",
            Self::AccessChallenge => "Access-Challenge",
            Self::StatusServer => "Status-Server",
            Self::StatusClient => "Status-Client",
            Self::DisconnectRequest => "Disconnect-Request",
            Self::DisconnectAck => "Disconnect-ACK",
            Self::DisconnectNak => "Disconnect-NAK",
            Self::CoaRequest => "CoA-Request",
            Self::CoaAck => "CoA-ACK",
            Self::CoaNak => "CoA-NAK",
            Self::ProtocolError => "Protocol-Error",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The packet Identifier octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(pub u8);

/// A 16-octet Request or Response Authenticator.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Authenticator(pub [u8; 16]);

impl Authenticator {
    /// Sixteen zero octets, as used while computing accounting authenticators.
    pub const ZERO: Self = Self([0; 16]);
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A decoded, structurally valid RADIUS packet borrowing the received bytes.
///
/// Construction checks the header, the Length field against the code's limits and
/// every attribute's length, so iterating attributes cannot fail afterwards. Octets
/// beyond Length (padding) are ignored, as RFC 2865 §3 requires.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    code: Code,
    bytes: &'a [u8],
}

impl std::fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code)
            .field("identifier", &self.identifier().0)
            .field("length", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Packet<'a> {
    /// Decodes a datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = datagram
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::TooShort { len: datagram.len() })?;
        let code = Code::from_u8(header[0]).ok_or(Error::UnknownCode(header[0]))?;
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let max = code.max_len();
        if !(HEADER_LEN..=max).contains(&length) {
            return Err(Error::BadLength { length, min: HEADER_LEN, max });
        }
        let bytes = datagram.get(..length).ok_or(Error::Truncated { length, received: datagram.len() })?;
        validate_attributes(bytes)?;
        Ok(Self { code, bytes })
    }

    /// The packet code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The Identifier octet.
    pub fn identifier(&self) -> Identifier {
        Identifier(self.bytes[1])
    }

    /// The Authenticator field as received.
    pub fn authenticator(&self) -> Authenticator {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[4..HEADER_LEN]);
        Authenticator(a)
    }

    /// The packet's octets, exactly Length long.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attribute area.
    pub fn attribute_bytes(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Every attribute in wire order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes { rest: self.attribute_bytes() }
    }

    /// The value of the first attribute of this type.
    pub fn attribute(&self, typ: u8) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// The values of every attribute of this type, in order.
    pub fn attributes_of(&self, typ: u8) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.attributes().filter(move |a| a.typ == typ).map(|a| a.value)
    }

    /// Whether at least one attribute of this type is present.
    pub fn has_attribute(&self, typ: u8) -> bool {
        self.attribute(typ).is_some()
    }

    /// Every Vendor-Specific attribute whose structure parses, in order.
    pub fn vendor_specific(&self) -> impl Iterator<Item = VendorSpecific<'a>> + use<'a> {
        self.attributes_of(VENDOR_SPECIFIC).filter_map(|v| VendorSpecific::parse(v).ok())
    }

    /// The first sub-attribute `typ` of vendor `vendor` (RFC 2865 §5.26 layout).
    pub fn vendor_attribute(&self, vendor: u32, typ: u8) -> Option<&'a [u8]> {
        self.vendor_attributes(vendor, typ).next()
    }

    /// Every sub-attribute `typ` of vendor `vendor`, in order.
    pub fn vendor_attributes(&self, vendor: u32, typ: u8) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.vendor_specific()
            .filter(move |v| v.vendor_id == vendor)
            .flat_map(|v| v.sub_attributes())
            .filter_map(move |s| s.ok().filter(|a| a.typ == typ).map(|a| a.value))
    }

    /// The EAP-Message attributes joined in order (RFC 3579 §3.1), or `None` if absent.
    pub fn eap_message(&self) -> Option<Vec<u8>> {
        let mut parts = self.attributes_of(EAP_MESSAGE).peekable();
        parts.peek()?;
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(p);
        }
        Some(out)
    }
}

fn validate_attributes(packet: &[u8]) -> Result<(), Error> {
    let mut at = HEADER_LEN;
    while at < packet.len() {
        let typ = packet[at];
        let Some(&len) = packet.get(at + 1) else {
            return Err(Error::AttributeOverrun { at, typ, len: 0 });
        };
        if len < 2 {
            return Err(Error::AttributeTooShort { at, typ, len });
        }
        let end = at + usize::from(len);
        if end > packet.len() {
            return Err(Error::AttributeOverrun { at, typ, len });
        }
        at = end;
    }
    Ok(())
}

/// One attribute: its Type octet and its value (without the two header octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub typ: u8,
    pub value: &'a [u8],
}

/// Iterator over the attributes of a validated packet.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // The packet was validated on decode; the checks below only keep this total.
        let (&typ, rest) = self.rest.split_first()?;
        let (&len, _) = rest.split_first()?;
        let value = self.rest.get(2..usize::from(len))?;
        self.rest = &self.rest[usize::from(len)..];
        Some(Attribute { typ, value })
    }
}

/// A Vendor-Specific attribute (RFC 2865 §5.26): Vendor-Id and sub-attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorSpecific<'a> {
    pub vendor_id: u32,
    pub data: &'a [u8],
}

impl<'a> VendorSpecific<'a> {
    /// Splits the Vendor-Id from the vendor data.
    pub fn parse(value: &'a [u8]) -> Result<Self, Error> {
        let (id, data) =
            value.split_first_chunk::<4>().ok_or(Error::BadVendorSpecific("shorter than the 4-octet Vendor-Id"))?;
        if id[0] != 0 {
            return Err(Error::BadVendorSpecific("high octet of Vendor-Id is not zero"));
        }
        Ok(Self { vendor_id: u32::from_be_bytes(*id), data })
    }

    /// The sub-attributes in the recommended one-octet type, one-octet length layout.
    /// A malformed sub-attribute ends the iteration with one `Err`.
    pub fn sub_attributes(&self) -> SubAttributes<'a> {
        SubAttributes { rest: self.data, failed: false }
    }
}

/// Iterator over vendor sub-attributes.
#[derive(Debug, Clone)]
pub struct SubAttributes<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for SubAttributes<'a> {
    type Item = Result<Attribute<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let parsed = match self.rest {
            [typ, len, ..] if *len >= 2 && usize::from(*len) <= self.rest.len() => {
                let len = usize::from(*len);
                let attr = Attribute { typ: *typ, value: &self.rest[2..len] };
                self.rest = &self.rest[len..];
                Ok(attr)
            }
            _ => Err(Error::BadVendorSpecific("sub-attribute length is invalid")),
        };
        self.failed = parsed.is_err();
        Some(parsed)
    }
}
