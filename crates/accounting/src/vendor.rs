//! Vendor adapters: where each VPN puts the client's public address and device.
//! The table in `docs/vendor-attributes.md` documents the same order.

use std::collections::BTreeMap;
use std::net::IpAddr;

use portcullis_radius::{Packet, attr, attr::vendor as id};

use crate::{int, lossy, tagged_text, text};

/// The VPN family a RADIUS client belongs to (configured per client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vendor {
    #[default]
    Generic,
    Microsoft,
    CiscoAsa,
    F5,
    Checkpoint,
    Fortinet,
    PaloAlto,
}

impl Vendor {
    /// Every adapter.
    pub const ALL: [Self; 7] =
        [Self::Generic, Self::Microsoft, Self::CiscoAsa, Self::F5, Self::Checkpoint, Self::Fortinet, Self::PaloAlto];

    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Microsoft => "microsoft",
            Self::CiscoAsa => "cisco-asa",
            Self::F5 => "f5",
            Self::Checkpoint => "checkpoint",
            Self::Fortinet => "fortinet",
            Self::PaloAlto => "palo-alto",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

pub(crate) struct Observed {
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) device: Option<String>,
}

/// Parses an endpoint string as VPNs write it: `203.0.113.5`, `203.0.113.5:4500`,
/// `203.0.113.5[4500]` (strongSwan), `[2001:db8::1]:443`, `2001:db8::1`. A leading
/// RFC 2868 tag octet must already be stripped. FQDNs and MAC addresses give `None`.
pub fn parse_endpoint(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // strongSwan: address[port]
    if let Some((addr, rest)) = s.split_once('[') {
        if !addr.is_empty() && rest.ends_with(']') {
            return addr.parse().ok();
        }
    }
    // [v6]:port or [v6]
    if let Some(inner) = s.strip_prefix('[') {
        return inner.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    // v4:port
    s.rsplit_once(':').filter(|(a, _)| !a.contains(':')).and_then(|(a, _)| a.parse().ok())
}

fn cisco_avpairs<'a>(p: &Packet<'a>) -> impl Iterator<Item = String> + use<'a> {
    p.vendor_attributes(id::CISCO, 1).map(lossy)
}

fn cisco_avpair(p: &Packet<'_>, key: &str) -> Option<String> {
    cisco_avpairs(p).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn mdm_tlv(p: &Packet<'_>, key: &str) -> Option<String> {
    cisco_avpairs(p).find_map(|pair| {
        let rest = pair.strip_prefix("mdm-tlv=")?;
        let (k, v) = rest.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string()).filter(|v| !v.is_empty())
    })
}

fn vsa_text(p: &Packet<'_>, vendor: u32, typ: u8) -> Option<String> {
    p.vendor_attribute(vendor, typ).map(lossy).filter(|s| !s.is_empty())
}

fn vsa_int(p: &Packet<'_>, vendor: u32, typ: u8) -> Option<u32> {
    p.vendor_attribute(vendor, typ).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes)
}

/// Client address candidates in precedence order.
fn client_ip(p: &Packet<'_>, vendor: Vendor) -> Option<IpAddr> {
    let tce = || tagged_text(p, attr::TUNNEL_CLIENT_ENDPOINT).and_then(|s| parse_endpoint(&s));
    let calling = || text(p, attr::CALLING_STATION_ID).and_then(|s| parse_endpoint(&s));
    let cisco = || cisco_avpair(p, "ip:source-ip").and_then(|s| parse_endpoint(&s));
    let palo = || vsa_text(p, id::PALO_ALTO, 7).and_then(|s| parse_endpoint(&s));
    let forti = || {
        p.vendor_attribute(id::FORTINET, 2).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(IpAddr::from).or_else(|| {
            p.vendor_attribute(id::FORTINET, 4).and_then(|v| <[u8; 16]>::try_from(v).ok()).map(IpAddr::from)
        })
    };
    match vendor {
        Vendor::Fortinet => forti().or_else(tce).or_else(calling),
        Vendor::PaloAlto => palo().or_else(tce).or_else(calling),
        Vendor::CiscoAsa => tce().or_else(calling).or_else(cisco),
        _ => tce().or_else(calling).or_else(cisco).or_else(palo).or_else(forti),
    }
}

/// The client device and where its value came from. Every one of these is chosen by
/// the connecting client: a claim, recorded with its source so the evidence can say so.
fn device(p: &Packet<'_>, vendor: Vendor) -> Option<(String, &'static str)> {
    let from = |v: Option<String>, source: &'static str| v.map(|v| (v, source));
    let microsoft = || {
        from(vsa_text(p, id::MICROSOFT, 50), "Microsoft MS-Machine-Name (311/50)")
            .or_else(|| from(vsa_text(p, id::MICROSOFT, 34), "Microsoft MS-RAS-Client-Name (311/34)"))
    };
    let cisco = || {
        from(mdm_tlv(p, "device-uid"), "Cisco mdm-tlv=device-uid (9/1)")
            .or_else(|| from(mdm_tlv(p, "device-mac"), "Cisco mdm-tlv=device-mac (9/1)"))
            .or_else(|| from(mdm_tlv(p, "device-type"), "Cisco mdm-tlv=device-type (9/1)"))
    };
    let palo = || from(vsa_text(p, id::PALO_ALTO, 9), "Palo Alto PaloAlto-Client-Hostname (25461/9)");
    match vendor {
        Vendor::Microsoft => microsoft(),
        Vendor::CiscoAsa => cisco(),
        Vendor::PaloAlto => palo(),
        _ => microsoft().or_else(cisco).or_else(palo),
    }
}

pub(crate) fn observe(p: &Packet<'_>, vendor: Vendor, details: &mut BTreeMap<String, String>) -> Observed {
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            details.insert(k.to_string(), v);
        }
    };
    put("calling_station_id", text(p, attr::CALLING_STATION_ID));
    put("called_station_id", text(p, attr::CALLED_STATION_ID));
    put("tunnel_client_endpoint", tagged_text(p, attr::TUNNEL_CLIENT_ENDPOINT));
    put("nas_port_type", int(p, attr::NAS_PORT_TYPE).map(|v| v.to_string()));
    put(
        "tunnel_type",
        p.attribute(attr::TUNNEL_TYPE)
            .and_then(|v| v.get(1..4))
            .map(|v| u32::from_be_bytes([0, v[0], v[1], v[2]]).to_string()),
    );
    if !p.has_attribute(attr::VENDOR_SPECIFIC) {
        return Observed { client_ip: client_ip(p, vendor), device: None };
    }
    // Microsoft RRAS
    put("machine_name", vsa_text(p, id::MICROSOFT, 50));
    put("ras_client_name", vsa_text(p, id::MICROSOFT, 34));
    put("ras_client_version", vsa_text(p, id::MICROSOFT, 35));
    put("ras_version", vsa_text(p, id::MICROSOFT, 18));
    // Cisco ASA / AnyConnect
    put("tunnel_group", vsa_text(p, id::CISCO_ASA, 146));
    put("group_policy", vsa_text(p, id::CISCO_ASA, 25));
    put("client_type", vsa_int(p, id::CISCO_ASA, 150).map(|v| v.to_string()));
    put("session_type", vsa_int(p, id::CISCO_ASA, 151).map(|v| v.to_string()));
    put("device_platform", mdm_tlv(p, "device-platform"));
    put("device_platform_version", mdm_tlv(p, "device-platform-version"));
    put("device_type", mdm_tlv(p, "device-type"));
    put("client_version", mdm_tlv(p, "ac-user-agent"));
    put("audit_session_id", cisco_avpair(p, "audit-session-id"));
    // Palo Alto GlobalProtect
    put("client_os", vsa_text(p, id::PALO_ALTO, 8));
    put("client_hostname", vsa_text(p, id::PALO_ALTO, 9));
    put("globalprotect_version", vsa_text(p, id::PALO_ALTO, 10));
    // Fortinet
    put("fortinet_group", vsa_text(p, id::FORTINET, 1));
    let device = device(p, vendor);
    put("device_source", device.as_ref().map(|d| d.1.to_string()));
    Observed { client_ip: client_ip(p, vendor), device: device.map(|d| d.0) }
}

#[cfg(test)]
mod tests {
    use super::parse_endpoint;

    #[test]
    fn endpoints() {
        for (s, want) in [
            ("203.0.113.5", Some("203.0.113.5")),
            (" 203.0.113.5 ", Some("203.0.113.5")),
            ("203.0.113.5:4500", Some("203.0.113.5")),
            ("203.0.113.5[4500]", Some("203.0.113.5")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("2001:db8::1[500]", Some("2001:db8::1")),
            ("vpn.example.com", None),
            ("00-11-22-33-44-55", None),
            ("[", None),
            ("", None),
        ] {
            assert_eq!(parse_endpoint(s), want.map(|w| w.parse().unwrap()), "{s}");
        }
    }
}
