//! Wire numbers of the attributes Portcullis reads or writes directly.
//! Names follow the RFCs; the dictionary has the full set.

/// User-Name (RFC 2865 §5.1).
pub const USER_NAME: u8 = 1;
/// User-Password (RFC 2865 §5.2).
pub const USER_PASSWORD: u8 = 2;
/// CHAP-Password (RFC 2865 §5.3).
pub const CHAP_PASSWORD: u8 = 3;
/// NAS-IP-Address (RFC 2865 §5.4).
pub const NAS_IP_ADDRESS: u8 = 4;
/// NAS-Port (RFC 2865 §5.5).
pub const NAS_PORT: u8 = 5;
/// Service-Type (RFC 2865 §5.6).
pub const SERVICE_TYPE: u8 = 6;
/// Framed-Protocol (RFC 2865 §5.7).
pub const FRAMED_PROTOCOL: u8 = 7;
/// Framed-IP-Address (RFC 2865 §5.8).
pub const FRAMED_IP_ADDRESS: u8 = 8;
/// Reply-Message (RFC 2865 §5.18).
pub const REPLY_MESSAGE: u8 = 18;
/// State (RFC 2865 §5.24).
pub const STATE: u8 = 24;
/// Class (RFC 2865 §5.25).
pub const CLASS: u8 = 25;
/// Vendor-Specific (RFC 2865 §5.26).
pub const VENDOR_SPECIFIC: u8 = 26;
/// Called-Station-Id (RFC 2865 §5.30).
pub const CALLED_STATION_ID: u8 = 30;
/// Calling-Station-Id (RFC 2865 §5.31).
pub const CALLING_STATION_ID: u8 = 31;
/// NAS-Identifier (RFC 2865 §5.32).
pub const NAS_IDENTIFIER: u8 = 32;
/// Proxy-State (RFC 2865 §5.33).
pub const PROXY_STATE: u8 = 33;
/// Acct-Status-Type (RFC 2866 §5.1).
pub const ACCT_STATUS_TYPE: u8 = 40;
/// Acct-Delay-Time (RFC 2866 §5.2).
pub const ACCT_DELAY_TIME: u8 = 41;
/// Acct-Input-Octets (RFC 2866 §5.3).
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// Acct-Output-Octets (RFC 2866 §5.4).
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// Acct-Session-Id (RFC 2866 §5.5).
pub const ACCT_SESSION_ID: u8 = 44;
/// Acct-Authentic (RFC 2866 §5.6).
pub const ACCT_AUTHENTIC: u8 = 45;
/// Acct-Session-Time (RFC 2866 §5.7).
pub const ACCT_SESSION_TIME: u8 = 46;
/// Acct-Input-Packets (RFC 2866 §5.8).
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// Acct-Output-Packets (RFC 2866 §5.9).
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// Acct-Terminate-Cause (RFC 2866 §5.10).
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// Acct-Multi-Session-Id (RFC 2866 §5.11).
pub const ACCT_MULTI_SESSION_ID: u8 = 50;
/// Acct-Input-Gigawords (RFC 2869 §5.1).
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// Acct-Output-Gigawords (RFC 2869 §5.2).
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
/// Event-Timestamp (RFC 2869 §5.3).
pub const EVENT_TIMESTAMP: u8 = 55;
/// CHAP-Challenge (RFC 2865 §5.40).
pub const CHAP_CHALLENGE: u8 = 60;
/// NAS-Port-Type (RFC 2865 §5.41).
pub const NAS_PORT_TYPE: u8 = 61;
/// Tunnel-Type (RFC 2868 §3.1).
pub const TUNNEL_TYPE: u8 = 64;
/// Tunnel-Medium-Type (RFC 2868 §3.2).
pub const TUNNEL_MEDIUM_TYPE: u8 = 65;
/// Tunnel-Client-Endpoint (RFC 2868 §3.3).
pub const TUNNEL_CLIENT_ENDPOINT: u8 = 66;
/// Tunnel-Server-Endpoint (RFC 2868 §3.4).
pub const TUNNEL_SERVER_ENDPOINT: u8 = 67;
/// Tunnel-Password (RFC 2868 §3.5).
pub const TUNNEL_PASSWORD: u8 = 69;
/// EAP-Message (RFC 3579 §3.1).
pub const EAP_MESSAGE: u8 = 79;
/// Message-Authenticator (RFC 3579 §3.2).
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// NAS-Port-Id (RFC 2869 §5.17).
pub const NAS_PORT_ID: u8 = 87;
/// NAS-IPv6-Address (RFC 3162 §2.1).
pub const NAS_IPV6_ADDRESS: u8 = 95;
/// Framed-Interface-Id (RFC 3162 §2.2).
pub const FRAMED_INTERFACE_ID: u8 = 96;
/// Framed-IPv6-Prefix (RFC 3162 §2.3).
pub const FRAMED_IPV6_PREFIX: u8 = 97;
/// Framed-IPv6-Address (RFC 6911 §3.1).
pub const FRAMED_IPV6_ADDRESS: u8 = 168;

/// Acct-Status-Type values (RFC 2866 §5.1, RFC 2867 §4.1).
pub mod status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
    pub const TUNNEL_START: u32 = 9;
    pub const TUNNEL_LINK_REJECT: u32 = 14;
    pub const FAILED: u32 = 15;
}

/// Vendor ids (IANA Private Enterprise Numbers).
pub mod vendor {
    pub const CISCO: u32 = 9;
    pub const MICROSOFT: u32 = 311;
    pub const CHECKPOINT: u32 = 2620;
    pub const CISCO_ASA: u32 = 3076;
    pub const F5: u32 = 3375;
    pub const FORTINET: u32 = 12356;
    pub const PALO_ALTO: u32 = 25461;
}
