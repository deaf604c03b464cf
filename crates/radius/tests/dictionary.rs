//! The built-in dictionary and the FreeRADIUS file format.

use portcullis_radius::{AttributeKey, DataType, Dictionary, Encryption, Value};

#[test]
fn builtin_has_every_rfc_and_vendor() {
    let d = Dictionary::builtin();
    for name in [
        "User-Name",
        "Acct-Status-Type",
        "Acct-Tunnel-Connection",
        "Tunnel-Client-Endpoint",
        "Event-Timestamp",
        "Framed-IPv6-Prefix",
        "EAP-Key-Name",
        "Error-Cause",
        "MS-MPPE-Send-Key",
        "Cisco-AVPair",
        "ASA-TunnelGroupName",
        "F5-LTM-User-Role",
        "CP-Gaia-User-Role",
        "Fortinet-Client-IP-Address",
        "PaloAlto-Client-Source-IP",
    ] {
        assert!(d.by_name(name).is_some(), "{name} missing");
    }
    for id in [9, 311, 2620, 3076, 3375, 12356, 25461] {
        assert!(d.vendor(id).is_some(), "vendor {id} missing");
    }
    let tpw = d.by_name("Tunnel-Password").unwrap();
    assert!(tpw.has_tag);
    assert_eq!(tpw.encrypt, Some(Encryption::TunnelPassword));
    let st = d.by_name("Acct-Status-Type").unwrap().key;
    assert_eq!(d.value_name(st, 7), Some("Accounting-On"));
    assert_eq!(d.value_number(st, "Tunnel-Link-Reject"), Some(14));
    assert_eq!(d.by_key(AttributeKey { vendor: 311, number: 16 }).unwrap().name, "MS-MPPE-Send-Key");
}

#[test]
fn extra_file_with_vendor_block_values_and_include() {
    let mut d = Dictionary::builtin();
    let main = "VENDOR Example 32473\nBEGIN-VENDOR Example\nATTRIBUTE Example-Counter 1 integer64\nATTRIBUTE Example-Level 2 integer\nEND-VENDOR Example\n$INCLUDE more\n";
    let more = "VALUE Example-Level High 3 # trailing comment\nATTRIBUTE Old-Style 3 ifid Example\n";
    let mut inc = |name: &str| (name == "more").then(|| ("more".to_string(), more.to_string()));
    d.parse_str("main", main, &mut inc).unwrap();
    let c = d.by_name("Example-Counter").unwrap();
    assert_eq!(c.key, AttributeKey { vendor: 32473, number: 1 });
    assert_eq!(c.data_type, DataType::Integer64);
    assert_eq!(d.value_number(d.by_name("Example-Level").unwrap().key, "High"), Some(3));
    assert_eq!(d.by_name("Old-Style").unwrap().key.vendor, 32473);
}

#[test]
fn bad_lines_name_file_and_line() {
    let mut d = Dictionary::builtin();
    let mut none = |_: &str| None;
    let e = d.parse_str("site", "# ok\nATTRIBUTE Foo 300 integer\n", &mut none).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("site", 2));
    let e = d.parse_str("site", "ATTRIBUTE Foo 3 floaty\n", &mut none).unwrap_err();
    assert!(e.to_string().starts_with("site:1: unknown data type"), "{e}");
    let e = d.parse_str("x", "\n\nVALUE Nope A 1\n", &mut none).unwrap_err();
    assert_eq!(e.line, 3);
    let e = d.parse_str("x", "$INCLUDE missing\n", &mut none).unwrap_err();
    assert!(e.message.contains("missing"));
    let e = d.parse_str("x", "BEGIN-VENDOR Nobody\n", &mut none).unwrap_err();
    assert!(e.message.contains("unknown vendor"));
    let e = d.parse_str("x", "FROB\n", &mut none).unwrap_err();
    assert!(e.message.contains("unknown keyword"));
}

#[test]
fn include_loops_stop() {
    let mut d = Dictionary::default();
    let mut inc = |_: &str| Some(("self".to_string(), "$INCLUDE self\n".to_string()));
    let e = d.parse_str("self", "$INCLUDE self\n", &mut inc).unwrap_err();
    assert!(e.message.contains("nested deeper"));
}

#[test]
fn load_file_from_disk_reports_path() {
    let dir = std::env::temp_dir().join(format!("portcullis-dict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dictionary"), "$INCLUDE dictionary.local\n").unwrap();
    std::fs::write(dir.join("dictionary.local"), "ATTRIBUTE Local-Thing 240 string\nATTRIBUTE Broken\n").unwrap();
    let mut d = Dictionary::builtin();
    let e = d.load_file(&dir.join("dictionary")).unwrap_err();
    assert!(e.file.ends_with("dictionary.local"));
    assert_eq!(e.line, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typed_values() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    assert_eq!(Value::decode(DataType::IpAddr, &[10, 0, 0, 1]).unwrap(), Value::IpAddr(Ipv4Addr::new(10, 0, 0, 1)));
    assert!(Value::decode(DataType::IpAddr, &[10, 0, 0]).is_err());
    assert_eq!(Value::decode(DataType::Integer64, &[0, 0, 0, 1, 0, 0, 0, 2]).unwrap(), Value::Integer64((1 << 32) + 2));
    let p = Value::decode(DataType::Ipv6Prefix, &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]).unwrap();
    assert_eq!(p, Value::Ipv6Prefix { prefix_len: 64, addr: "2001:db8:0:1::".parse::<Ipv6Addr>().unwrap() });
    assert_eq!(p.to_string(), "2001:db8:0:1::/64");
    assert_eq!(p.encode(), vec![0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
    assert!(Value::decode(DataType::Ipv6Prefix, &[0, 129]).is_err());
    assert!(Value::decode(DataType::Ipv6Prefix, &[0, 64, 1]).is_err());
    assert_eq!(Value::decode(DataType::Ifid, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap().to_string(), "0102:0304:0506:0708");
    assert_eq!(Value::decode(DataType::Date, &[0, 0, 0, 59]).unwrap(), Value::Date(59));
    assert_eq!(Value::decode(DataType::Text, b"caf\xc3\xa9").unwrap(), Value::Text("café"));
    assert_eq!(Value::decode(DataType::Text, b"\xff").unwrap(), Value::Octets(b"\xff"));
}

#[test]
fn tagged_values() {
    use portcullis_radius::split_tag;
    let (tag, rest) = split_tag(DataType::Text, b"\x01203.0.113.5");
    assert_eq!((tag, &rest[..]), (Some(1), &b"203.0.113.5"[..]));
    let (tag, rest) = split_tag(DataType::Text, b"\x00203.0.113.5");
    assert_eq!((tag, &rest[..]), (None, &b"203.0.113.5"[..]));
    let (tag, rest) = split_tag(DataType::Text, b"203.0.113.5");
    assert_eq!((tag, &rest[..]), (None, &b"203.0.113.5"[..]));
    let (tag, rest) = split_tag(DataType::Integer, &[2, 0, 0, 3]);
    assert_eq!((tag, &rest[..]), (Some(2), &[0, 0, 0, 3][..]));
}
