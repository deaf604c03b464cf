//! Each vendor's accounting attribute set normalises to the same session model.

use std::net::IpAddr;

use portcullis_accounting::{NormaliseError, StatusType, Vendor, normalise};
use portcullis_radius::{Code, Identifier, Packet, PacketBuilder, SharedSecret, VerifiedRequest, VerifyPolicy, attr};

const ARRIVAL_MS: i64 = 1_700_000_000_000;

fn build(f: impl FnOnce(&mut PacketBuilder)) -> Vec<u8> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(1));
    f(&mut b);
    b.encode_computed_request(&SharedSecret::new("s")).unwrap()
}

fn run(bytes: &[u8], vendor: Vendor) -> Result<portcullis_accounting::AccountingRecord, NormaliseError> {
    let p = Packet::decode(bytes).unwrap();
    let v = VerifiedRequest::verify(p, &SharedSecret::new("s"), VerifyPolicy::default()).unwrap();
    normalise(&v, "vpn", "192.0.2.10".parse().unwrap(), vendor, ARRIVAL_MS)
}

fn int(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

#[test]
fn microsoft_rras_start() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(1)).unwrap();
        b.attribute(attr::USER_NAME, b"CONTOSO\\Alice").unwrap();
        b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
        b.attribute(attr::ACCT_SESSION_ID, b"37").unwrap();
        b.attribute(attr::FRAMED_IP_ADDRESS, &[10, 8, 0, 5]).unwrap();
        b.attribute(attr::CALLING_STATION_ID, b"198.51.100.7").unwrap();
        b.attribute(attr::TUNNEL_CLIENT_ENDPOINT, b"\x00198.51.100.7").unwrap();
        b.attribute(attr::ACCT_DELAY_TIME, &int(3)).unwrap();
        b.vendor_attributes(311, &[(50, b"LAPTOP-ALICE"), (35, b"Windows 11")]).unwrap();
    });
    let r = run(&bytes, Vendor::Microsoft).unwrap();
    assert_eq!(r.status_type(), StatusType::Start);
    assert_eq!(r.user.as_deref(), Some("alice"));
    assert_eq!(r.user_raw.as_deref(), Some("CONTOSO\\Alice"));
    assert_eq!(r.nas, "10.0.0.1");
    assert_eq!(r.client_ip, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(r.device.as_deref(), Some("LAPTOP-ALICE"));
    assert_eq!(r.framed_ip, Some("10.8.0.5".parse().unwrap()));
    assert_eq!(r.event_time, 1_700_000_000 - 3);
    assert_eq!(r.details.get("ras_client_version").map(String::as_str), Some("Windows 11"));
    assert!(r.session_key.is_some());
}

#[test]
fn cisco_asa_interim_with_anyconnect_device() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(3)).unwrap();
        b.attribute(attr::USER_NAME, b"bob@example.com").unwrap();
        b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 2]).unwrap();
        b.attribute(attr::ACCT_SESSION_ID, b"C0A80001000A").unwrap();
        b.attribute(attr::TUNNEL_CLIENT_ENDPOINT, b"\x00203.0.113.9").unwrap();
        b.attribute(attr::EVENT_TIMESTAMP, &int(1_699_999_000)).unwrap();
        b.attribute(attr::ACCT_SESSION_TIME, &int(600)).unwrap();
        b.attribute(attr::ACCT_INPUT_OCTETS, &int(5)).unwrap();
        b.attribute(attr::ACCT_INPUT_GIGAWORDS, &int(2)).unwrap();
        b.attribute(attr::ACCT_OUTPUT_OCTETS, &int(7)).unwrap();
        b.vendor_attribute(9, 1, b"mdm-tlv=device-platform=win").unwrap();
        b.vendor_attribute(9, 1, b"mdm-tlv=device-platform-version=10.0.19041 ").unwrap();
        b.vendor_attribute(9, 1, b"mdm-tlv=device-uid=ABCDEF0123").unwrap();
        b.vendor_attribute(9, 1, b"mdm-tlv=ac-user-agent=AnyConnect Windows 4.6.01098").unwrap();
        b.vendor_attribute(3076, 146, b"EMPLOYEES").unwrap();
        b.vendor_attribute(3076, 150, &int(2)).unwrap();
    });
    let r = run(&bytes, Vendor::CiscoAsa).unwrap();
    assert_eq!(r.status_type(), StatusType::InterimUpdate);
    assert_eq!(r.user.as_deref(), Some("bob"));
    assert_eq!(r.event_time, 1_699_999_000);
    assert_eq!(r.started_at(), 1_699_999_000 - 600);
    assert_eq!(r.input_octets, Some((2 << 32) + 5));
    assert_eq!(r.output_octets, Some(7));
    assert_eq!(r.client_ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(r.device.as_deref(), Some("ABCDEF0123"));
    assert_eq!(r.details["device_source"], "Cisco mdm-tlv=device-uid (9/1)", "the device is a claim with a source");
    assert_eq!(r.details["device_platform_version"], "10.0.19041");
    assert_eq!(r.details["tunnel_group"], "EMPLOYEES");
    assert_eq!(r.details["client_type"], "2");
}

#[test]
fn cisco_source_ip_avpair_when_no_endpoint() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(1)).unwrap();
        b.attribute(attr::NAS_IDENTIFIER, b"asa-1").unwrap();
        b.vendor_attribute(9, 1, b"ip:source-ip=198.51.100.99").unwrap();
    });
    let r = run(&bytes, Vendor::CiscoAsa).unwrap();
    assert_eq!(r.client_ip, Some("198.51.100.99".parse().unwrap()));
    assert_eq!(r.nas, "asa-1");
}

#[test]
fn f5_stop_with_gigawords_and_cause() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(2)).unwrap();
        b.attribute(attr::USER_NAME, b"carol").unwrap();
        b.attribute(attr::NAS_IDENTIFIER, b"bigip-apm").unwrap();
        b.attribute(attr::ACCT_SESSION_ID, b"a1b2c3").unwrap();
        b.attribute(attr::ACCT_SESSION_TIME, &int(3600)).unwrap();
        b.attribute(attr::ACCT_OUTPUT_OCTETS, &int(1)).unwrap();
        b.attribute(attr::ACCT_OUTPUT_GIGAWORDS, &int(1)).unwrap();
        b.attribute(attr::ACCT_TERMINATE_CAUSE, &int(1)).unwrap();
    });
    let r = run(&bytes, Vendor::F5).unwrap();
    assert_eq!(r.status_type(), StatusType::Stop);
    assert_eq!(r.output_octets, Some((1 << 32) + 1));
    assert_eq!(r.terminate_cause.as_deref(), Some("User-Request"));
    assert_eq!(r.client_ip, None, "F5 Stops carry no endpoint; storage keeps the Start's");
}

#[test]
fn strongswan_calling_station_with_port_and_ipv6_framed() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(1)).unwrap();
        b.attribute(attr::USER_NAME, b"dave").unwrap();
        b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 3]).unwrap();
        b.attribute(attr::CALLING_STATION_ID, b"203.0.113.5[4500]").unwrap();
        b.attribute(attr::FRAMED_IPV6_PREFIX, &[0, 128, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9])
            .unwrap();
    });
    let r = run(&bytes, Vendor::Generic).unwrap();
    assert_eq!(r.client_ip, Some("203.0.113.5".parse::<IpAddr>().unwrap()));
    assert_eq!(r.framed_ipv6.as_deref(), Some("2001:db8::9/128"));
}

#[test]
fn accounting_on_has_no_session_key_and_uses_source_when_no_nas_attributes() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(7)).unwrap();
    });
    let r = run(&bytes, Vendor::Checkpoint).unwrap();
    assert_eq!(r.status_type(), StatusType::AccountingOn);
    assert_eq!(r.session_key, None);
    assert_eq!(r.nas, "192.0.2.10");
}

#[test]
fn tunnel_status_types_are_recorded() {
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(12)).unwrap();
        b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
    });
    let r = run(&bytes, Vendor::Generic).unwrap();
    assert_eq!(r.status_type(), StatusType::Tunnel(12));
    assert_eq!(r.status_type().name(), "Tunnel-Link-Start");
}

#[test]
fn missing_status_and_forbidden_attributes_are_refused() {
    let bytes = build(|b| {
        b.attribute(attr::USER_NAME, b"x").unwrap();
    });
    assert_eq!(run(&bytes, Vendor::Generic).unwrap_err(), NormaliseError::MissingStatusType);
    let bytes = build(|b| {
        b.attribute(attr::ACCT_STATUS_TYPE, &int(1)).unwrap();
        b.attribute(attr::USER_PASSWORD, &[0; 16]).unwrap();
    });
    assert_eq!(run(&bytes, Vendor::Generic).unwrap_err(), NormaliseError::ForbiddenAttribute("User-Password"));
}

#[test]
fn same_session_same_key_across_user_spellings() {
    let key = |user: &[u8]| {
        let bytes = build(|b| {
            b.attribute(attr::ACCT_STATUS_TYPE, &int(1)).unwrap();
            b.attribute(attr::USER_NAME, user).unwrap();
            b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
            b.attribute(attr::ACCT_SESSION_ID, b"1").unwrap();
        });
        run(&bytes, Vendor::Generic).unwrap().session_key.unwrap()
    };
    assert_eq!(key(b"EXAMPLE\\eve"), key(b"eve@example.com"));
    assert_ne!(key(b"eve"), key(b"mallory"));
}
