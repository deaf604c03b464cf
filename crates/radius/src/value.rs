//! Attribute data types (RFC 8044 names, FreeRADIUS dictionary spellings) and typed values.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Error;

/// The data type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// UTF-8 text (RFC 8044 `text`; dictionary `string`).
    Text,
    /// Opaque octets (RFC 8044 `string`; dictionary `octets`).
    Octets,
    /// 32-bit unsigned integer.
    Integer,
    /// 32-bit signed integer.
    Signed,
    /// 8-bit unsigned integer.
    Byte,
    /// 16-bit unsigned integer.
    Short,
    /// 64-bit unsigned integer (RFC 6929 `integer64`).
    Integer64,
    /// Seconds since the Unix epoch, 32 bits.
    Date,
    /// IPv4 address.
    IpAddr,
    /// IPv6 address (RFC 3162).
    Ipv6Addr,
    /// IPv6 prefix: reserved octet, prefix length, up to 16 prefix octets (RFC 3162).
    Ipv6Prefix,
    /// IPv4 prefix (RFC 6572).
    Ipv4Prefix,
    /// 8-octet interface identifier (RFC 3162 Framed-Interface-Id).
    Ifid,
    /// 6-octet Ethernet address.
    Ether,
    /// Vendor-Specific container (RFC 2865 §5.26).
    Vsa,
    /// An address that is IPv4 or IPv6 by its length.
    ComboIp,
}

impl DataType {
    /// Parses a dictionary type keyword.
    pub fn from_keyword(s: &str) -> Option<Self> {
        Some(match s {
            "string" | "text" => Self::Text,
            "octets" => Self::Octets,
            "integer" | "uint32" => Self::Integer,
            "signed" | "int32" => Self::Signed,
            "byte" | "uint8" => Self::Byte,
            "short" | "uint16" => Self::Short,
            "integer64" | "uint64" => Self::Integer64,
            "date" => Self::Date,
            "ipaddr" | "ipv4addr" => Self::IpAddr,
            "ipv6addr" => Self::Ipv6Addr,
            "ipv6prefix" => Self::Ipv6Prefix,
            "ipv4prefix" => Self::Ipv4Prefix,
            "ifid" => Self::Ifid,
            "ether" => Self::Ether,
            "vsa" => Self::Vsa,
            "combo-ip" | "ipaddr_v4v6" => Self::ComboIp,
            _ => return None,
        })
    }

    /// The canonical keyword.
    pub const fn keyword(self) -> &'static str {
        match self {
            Self::Text => "string",
            Self::Octets => "octets",
            Self::Integer => "integer",
            Self::Signed => "signed",
            Self::Byte => "byte",
            Self::Short => "short",
            Self::Integer64 => "integer64",
            Self::Date => "date",
            Self::IpAddr => "ipaddr",
            Self::Ipv6Addr => "ipv6addr",
            Self::Ipv6Prefix => "ipv6prefix",
            Self::Ipv4Prefix => "ipv4prefix",
            Self::Ifid => "ifid",
            Self::Ether => "ether",
            Self::Vsa => "vsa",
            Self::ComboIp => "combo-ip",
        }
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value<'a> {
    Text(&'a str),
    Octets(&'a [u8]),
    Integer(u32),
    Signed(i32),
    Integer64(u64),
    Date(u32),
    IpAddr(Ipv4Addr),
    Ipv6Addr(Ipv6Addr),
    Ipv6Prefix { prefix_len: u8, addr: Ipv6Addr },
    Ipv4Prefix { prefix_len: u8, addr: Ipv4Addr },
    Ifid([u8; 8]),
    Ether([u8; 6]),
}

impl<'a> Value<'a> {
    /// Decodes `data` as `data_type`. Text that is not UTF-8 decodes as octets.
    pub fn decode(data_type: DataType, data: &'a [u8]) -> Result<Self, Error> {
        let bad = || Error::BadValue { data_type: data_type.keyword(), len: data.len() };
        Ok(match data_type {
            DataType::Text => match std::str::from_utf8(data) {
                Ok(s) => Self::Text(s),
                Err(_) => Self::Octets(data),
            },
            DataType::Octets | DataType::Vsa => Self::Octets(data),
            DataType::Integer => Self::Integer(u32::from_be_bytes(data.try_into().map_err(|_| bad())?)),
            DataType::Signed => Self::Signed(i32::from_be_bytes(data.try_into().map_err(|_| bad())?)),
            DataType::Byte => match data {
                [b] => Self::Integer(u32::from(*b)),
                _ => return Err(bad()),
            },
            DataType::Short => match data {
                [a, b] => Self::Integer(u32::from(u16::from_be_bytes([*a, *b]))),
                _ => return Err(bad()),
            },
            DataType::Integer64 => Self::Integer64(u64::from_be_bytes(data.try_into().map_err(|_| bad())?)),
            DataType::Date => Self::Date(u32::from_be_bytes(data.try_into().map_err(|_| bad())?)),
            DataType::IpAddr => Self::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).map_err(|_| bad())?)),
            DataType::Ipv6Addr => Self::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).map_err(|_| bad())?)),
            DataType::ComboIp => match data.len() {
                4 => Self::IpAddr(Ipv4Addr::from(<[u8; 4]>::try_from(data).map_err(|_| bad())?)),
                16 => Self::Ipv6Addr(Ipv6Addr::from(<[u8; 16]>::try_from(data).map_err(|_| bad())?)),
                _ => return Err(bad()),
            },
            DataType::Ipv6Prefix => {
                let [_, prefix_len, rest @ ..] = data else {
                    return Err(bad());
                };
                if *prefix_len > 128 || rest.len() > 16 || rest.len() * 8 < usize::from(*prefix_len) {
                    return Err(bad());
                }
                let mut octets = [0u8; 16];
                octets[..rest.len()].copy_from_slice(rest);
                Self::Ipv6Prefix { prefix_len: *prefix_len, addr: Ipv6Addr::from(octets) }
            }
            DataType::Ipv4Prefix => {
                let [_, prefix_len, a, b, c, d] = data else {
                    return Err(bad());
                };
                if *prefix_len > 32 {
                    return Err(bad());
                }
                Self::Ipv4Prefix { prefix_len: *prefix_len, addr: Ipv4Addr::new(*a, *b, *c, *d) }
            }
            DataType::Ifid => Self::Ifid(data.try_into().map_err(|_| bad())?),
            DataType::Ether => Self::Ether(data.try_into().map_err(|_| bad())?),
        })
    }

    /// Encodes the value to its wire octets.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Text(s) => s.as_bytes().to_vec(),
            Self::Octets(o) => o.to_vec(),
            Self::Integer(i) | Self::Date(i) => i.to_be_bytes().to_vec(),
            Self::Signed(i) => i.to_be_bytes().to_vec(),
            Self::Integer64(i) => i.to_be_bytes().to_vec(),
            Self::IpAddr(a) => a.octets().to_vec(),
            Self::Ipv6Addr(a) => a.octets().to_vec(),
            Self::Ipv6Prefix { prefix_len, addr } => {
                let n = usize::from(*prefix_len).div_ceil(8);
                let mut v = vec![0, *prefix_len];
                v.extend_from_slice(&addr.octets()[..n]);
                v
            }
            Self::Ipv4Prefix { prefix_len, addr } => {
                let mut v = vec![0, *prefix_len];
                v.extend_from_slice(&addr.octets());
                v
            }
            Self::Ifid(i) => i.to_vec(),
            Self::Ether(e) => e.to_vec(),
        }
    }
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(s) => write!(f, "{s:?}"),
            Self::Octets(o) => {
                f.write_str("0x")?;
                o.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::Integer(i) | Self::Date(i) => write!(f, "{i}"),
            Self::Signed(i) => write!(f, "{i}"),
            Self::Integer64(i) => write!(f, "{i}"),
            Self::IpAddr(a) => write!(f, "{a}"),
            Self::Ipv6Addr(a) => write!(f, "{a}"),
            Self::Ipv6Prefix { prefix_len, addr } => write!(f, "{addr}/{prefix_len}"),
            Self::Ipv4Prefix { prefix_len, addr } => write!(f, "{addr}/{prefix_len}"),
            Self::Ifid(i) => write!(
                f,
                "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}",
                i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]
            ),
            Self::Ether(e) => {
                write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", e[0], e[1], e[2], e[3], e[4], e[5])
            }
        }
    }
}

/// A tagged value (RFC 2868 §3): the tag, if the first octet is 0x01..=0x1F, and the rest.
/// For integer attributes the tag always occupies the first octet of the four.
pub fn split_tag(data_type: DataType, data: &[u8]) -> (Option<u8>, std::borrow::Cow<'_, [u8]>) {
    match (data_type, data) {
        (DataType::Integer, [tag, rest @ ..]) if data.len() == 4 => {
            let tag = (*tag != 0).then_some(*tag);
            (tag, std::borrow::Cow::Owned([&[0u8][..], rest].concat()))
        }
        (_, [tag @ 0x01..=0x1f, rest @ ..]) => (Some(*tag), std::borrow::Cow::Borrowed(rest)),
        (_, [0, rest @ ..]) if data_type != DataType::Integer => (None, std::borrow::Cow::Borrowed(rest)),
        _ => (None, std::borrow::Cow::Borrowed(data)),
    }
}
