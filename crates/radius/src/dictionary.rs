//! Attribute dictionaries in the FreeRADIUS file format.
//!
//! The built-in dictionary covers RFC 2865/2866/2867/2868/2869/3162/4072/5176/5997
//! (and RFC 4818/6911 attributes that VPNs send) plus the vendors VPN operators run.
//! Extra files load at run time; a bad line is an error naming the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::value::DataType;

/// Identifies an attribute: vendor 0 is the standard space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeKey {
    pub vendor: u32,
    pub number: u32,
}

/// How an attribute's value is hidden on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encryption {
    /// RFC 2865 §5.2 (User-Password).
    UserPassword,
    /// RFC 2868 §3.5 / RFC 2548 salt encryption (Tunnel-Password, MS-MPPE keys).
    TunnelPassword,
    /// Ascend's legacy scheme (recognised, not implemented).
    Ascend,
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: String,
    pub key: AttributeKey,
    pub data_type: DataType,
    pub has_tag: bool,
    pub encrypt: Option<Encryption>,
    pub concat: bool,
}

/// One vendor definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorDef {
    pub name: String,
    pub id: u32,
    /// Octets of the sub-attribute type and length fields (1,1 for RFC 2865 §5.26).
    pub type_len: u8,
    pub length_len: u8,
}

/// A dictionary load or parse failure, naming where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DictionaryError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Maps names to numbers and types and back.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    attributes: HashMap<AttributeKey, AttributeDef>,
    by_name: HashMap<String, AttributeKey>,
    vendors: HashMap<u32, VendorDef>,
    vendor_by_name: HashMap<String, u32>,
    values: HashMap<(AttributeKey, u64), String>,
    value_by_name: HashMap<(AttributeKey, String), u64>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("dictionary.rfc2865", include_str!("../dictionaries/dictionary.rfc2865")),
    ("dictionary.rfc2866", include_str!("../dictionaries/dictionary.rfc2866")),
    ("dictionary.rfc2867", include_str!("../dictionaries/dictionary.rfc2867")),
    ("dictionary.rfc2868", include_str!("../dictionaries/dictionary.rfc2868")),
    ("dictionary.rfc2869", include_str!("../dictionaries/dictionary.rfc2869")),
    ("dictionary.rfc3162", include_str!("../dictionaries/dictionary.rfc3162")),
    ("dictionary.rfc4072", include_str!("../dictionaries/dictionary.rfc4072")),
    ("dictionary.rfc5176", include_str!("../dictionaries/dictionary.rfc5176")),
    ("dictionary.microsoft", include_str!("../dictionaries/dictionary.microsoft")),
    ("dictionary.cisco", include_str!("../dictionaries/dictionary.cisco")),
    ("dictionary.cisco.asa", include_str!("../dictionaries/dictionary.cisco.asa")),
    ("dictionary.f5", include_str!("../dictionaries/dictionary.f5")),
    ("dictionary.checkpoint", include_str!("../dictionaries/dictionary.checkpoint")),
    ("dictionary.fortinet", include_str!("../dictionaries/dictionary.fortinet")),
    ("dictionary.paloalto", include_str!("../dictionaries/dictionary.paloalto")),
];

/// Deepest `$INCLUDE` nesting accepted (stops include loops).
const MAX_INCLUDE_DEPTH: usize = 16;

impl Dictionary {
    /// The built-in dictionary.
    pub fn builtin() -> Self {
        let mut d = Self::default();
        for (name, text) in BUILTIN {
            // The built-in files are tested to parse; a failure here is a build defect.
            if let Err(e) = d.parse_str(name, text, &mut |_: &str| None) {
                panic!("built-in dictionary is invalid: {e}");
            }
        }
        d
    }

    /// Loads a dictionary file from disk into this dictionary; `$INCLUDE` paths are
    /// relative to the including file.
    pub fn load_file(&mut self, path: &Path) -> Result<(), DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|e| DictionaryError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut include = |name: &str| -> Option<(String, String)> {
            let p: PathBuf = base.join(name);
            std::fs::read_to_string(&p).ok().map(|t| (p.display().to_string(), t))
        };
        self.parse_with(&path.display().to_string(), &text, &mut include, 0)
    }

    /// Parses dictionary text. `include` resolves `$INCLUDE` names to text (it gets
    /// the name as written; it returns `None` for a missing file).
    pub fn parse_str(
        &mut self,
        file: &str,
        text: &str,
        include: &mut dyn FnMut(&str) -> Option<(String, String)>,
    ) -> Result<(), DictionaryError> {
        self.parse_with(file, text, include, 0)
    }

    fn parse_with(
        &mut self,
        file: &str,
        text: &str,
        include: &mut dyn FnMut(&str) -> Option<(String, String)>,
        depth: usize,
    ) -> Result<(), DictionaryError> {
        let mut vendor_block: Option<u32> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| DictionaryError { file: file.to_string(), line, message };
            let content = raw.split('#').next().unwrap_or("");
            let tokens: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = tokens.split_first() else {
                continue;
            };
            match keyword {
                "$INCLUDE" | "$INCLUDE-" => {
                    let [name] = args else {
                        return Err(err("$INCLUDE takes one file name".into()));
                    };
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err(format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} levels")));
                    }
                    match include(name) {
                        Some((child_name, child_text)) => {
                            self.parse_with(&child_name, &child_text, include, depth + 1)?
                        }
                        None if keyword == "$INCLUDE-" => {}
                        None => return Err(err(format!("cannot include {name:?}"))),
                    }
                }
                "VENDOR" => self.parse_vendor(args).map_err(err)?,
                "BEGIN-VENDOR" => {
                    let [name, ..] = args else {
                        return Err(err("BEGIN-VENDOR needs a vendor name".into()));
                    };
                    let id = self
                        .vendor_by_name
                        .get(*name)
                        .copied()
                        .ok_or_else(|| err(format!("unknown vendor {name:?}")))?;
                    vendor_block = Some(id);
                }
                "END-VENDOR" => {
                    let [name] = args else {
                        return Err(err("END-VENDOR needs a vendor name".into()));
                    };
                    let id = self.vendor_by_name.get(*name).copied();
                    if id.is_none() || id != vendor_block {
                        return Err(err(format!("END-VENDOR {name:?} does not close the open BEGIN-VENDOR")));
                    }
                    vendor_block = None;
                }
                "ATTRIBUTE" => self.parse_attribute(args, vendor_block).map_err(err)?,
                "VALUE" => self.parse_value(args).map_err(err)?,
                "BEGIN-PROTOCOL" | "END-PROTOCOL" | "BEGIN-TLV" | "END-TLV" | "PROTOCOL" | "FLAGS" => {
                    // Accepted for compatibility with FreeRADIUS files; nothing to record.
                }
                other => return Err(err(format!("unknown keyword {other:?}"))),
            }
        }
        if vendor_block.is_some() {
            return Err(DictionaryError {
                file: file.to_string(),
                line: text.lines().count(),
                message: "BEGIN-VENDOR without END-VENDOR".into(),
            });
        }
        Ok(())
    }

    fn parse_vendor(&mut self, args: &[&str]) -> Result<(), String> {
        let (name, number, rest) = match args {
            [name, number, rest @ ..] => (*name, *number, rest),
            _ => return Err("VENDOR needs a name and a number".into()),
        };
        let id = parse_number(number).ok_or_else(|| format!("bad vendor number {number:?}"))?;
        let id = u32::try_from(id).map_err(|_| format!("vendor number {number} is too large"))?;
        let (mut type_len, mut length_len) = (1u8, 1u8);
        for flag in rest {
            let Some(fmt) = flag.strip_prefix("format=") else {
                return Err(format!("unknown VENDOR option {flag:?}"));
            };
            let (t, l) = fmt.split_once(',').ok_or_else(|| format!("bad format {fmt:?}"))?;
            type_len = t.parse().map_err(|_| format!("bad format {fmt:?}"))?;
            length_len = l.trim_end_matches(",c").parse().map_err(|_| format!("bad format {fmt:?}"))?;
            if !matches!((type_len, length_len), (1, 1) | (2, 2) | (4, 0) | (1, 0) | (2, 0) | (1, 2)) {
                return Err(format!("unsupported vendor format {fmt:?}"));
            }
        }
        self.vendors.insert(id, VendorDef { name: name.to_string(), id, type_len, length_len });
        self.vendor_by_name.insert(name.to_string(), id);
        Ok(())
    }

    fn parse_attribute(&mut self, args: &[&str], vendor_block: Option<u32>) -> Result<(), String> {
        let (name, number, type_word, rest) = match args {
            [name, number, type_word, rest @ ..] => (*name, *number, *type_word, rest),
            _ => return Err("ATTRIBUTE needs a name, a number and a type".into()),
        };
        let number = parse_number(number).ok_or_else(|| format!("bad attribute number {number:?}"))?;
        let number = u32::try_from(number).map_err(|_| "attribute number too large".to_string())?;
        // `octets[16]` style sizes are accepted and ignored.
        let base_type = type_word.split('[').next().unwrap_or(type_word);
        let data_type = DataType::from_keyword(base_type).ok_or_else(|| format!("unknown data type {type_word:?}"))?;
        let mut def = AttributeDef {
            name: name.to_string(),
            key: AttributeKey { vendor: vendor_block.unwrap_or(0), number },
            data_type,
            has_tag: false,
            encrypt: None,
            concat: false,
        };
        for word in rest {
            if let Some(&vendor) = self.vendor_by_name.get(*word) {
                def.key.vendor = vendor;
                continue;
            }
            for flag in word.split(',') {
                match flag {
                    "has_tag" => def.has_tag = true,
                    "concat" => def.concat = true,
                    "encrypt=1" => def.encrypt = Some(Encryption::UserPassword),
                    "encrypt=2" => def.encrypt = Some(Encryption::TunnelPassword),
                    "encrypt=3" => def.encrypt = Some(Encryption::Ascend),
                    "array" | "abinary" | "virtual" | "internal" | "secret" => {}
                    other => return Err(format!("unknown attribute flag {other:?}")),
                }
            }
        }
        if def.key.vendor != 0 {
            let vendor = self.vendors.get(&def.key.vendor).ok_or("vendor is not defined")?;
            let limit = match vendor.type_len {
                1 => 255,
                2 => 65535,
                _ => u32::MAX,
            };
            if number > limit {
                return Err(format!("attribute number {number} does not fit the vendor's format"));
            }
        } else if number > 255 {
            return Err(format!("standard attribute number {number} is above 255"));
        }
        self.by_name.insert(def.name.clone(), def.key);
        self.attributes.insert(def.key, def);
        Ok(())
    }

    fn parse_value(&mut self, args: &[&str]) -> Result<(), String> {
        let (attr, name, number) = match args {
            [attr, name, number] => (*attr, *name, *number),
            _ => return Err("VALUE needs an attribute name, a value name and a number".into()),
        };
        let key = *self.by_name.get(attr).ok_or_else(|| format!("VALUE for unknown attribute {attr:?}"))?;
        let number = parse_number(number).ok_or_else(|| format!("bad value number {number:?}"))?;
        self.values.insert((key, number), name.to_string());
        self.value_by_name.insert((key, name.to_string()), number);
        Ok(())
    }

    /// The definition with this name.
    pub fn by_name(&self, name: &str) -> Option<&AttributeDef> {
        self.by_name.get(name).and_then(|k| self.attributes.get(k))
    }

    /// The definition with this key.
    pub fn by_key(&self, key: AttributeKey) -> Option<&AttributeDef> {
        self.attributes.get(&key)
    }

    /// A vendor by id.
    pub fn vendor(&self, id: u32) -> Option<&VendorDef> {
        self.vendors.get(&id)
    }

    /// A vendor by name.
    pub fn vendor_by_name(&self, name: &str) -> Option<&VendorDef> {
        self.vendor_by_name.get(name).and_then(|id| self.vendors.get(id))
    }

    /// The name of an enumerated value.
    pub fn value_name(&self, key: AttributeKey, number: u64) -> Option<&str> {
        self.values.get(&(key, number)).map(String::as_str)
    }

    /// The number of an enumerated value by name.
    pub fn value_number(&self, key: AttributeKey, name: &str) -> Option<u64> {
        self.value_by_name.get(&(key, name.to_string())).copied()
    }

    /// Every enumerated value of an attribute, sorted by number.
    pub fn values_of(&self, key: AttributeKey) -> Vec<(u64, &str)> {
        let mut v: Vec<(u64, &str)> =
            self.values.iter().filter(|((k, _), _)| *k == key).map(|((_, n), name)| (*n, name.as_str())).collect();
        v.sort_unstable();
        v
    }

    /// Number of attribute definitions.
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether the dictionary is empty.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}
