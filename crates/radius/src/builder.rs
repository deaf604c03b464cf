//! The owned packet builder used for everything Portcullis sends.

use crate::attr::{EAP_MESSAGE, MESSAGE_AUTHENTICATOR, VENDOR_SPECIFIC};
use crate::crypto::{compute_message_authenticator, message_authenticator_basis, packet_md5};
use crate::packet::{HEADER_LEN, MAX_VALUE_LEN};
use crate::{Authenticator, Code, Error, Identifier, SharedSecret};

/// Builds one packet. Attributes are appended in call order; a requested
/// Message-Authenticator is always placed first (BlastRADIUS mitigation).
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    code: Code,
    identifier: Identifier,
    attributes: Vec<u8>,
    message_authenticator: bool,
}

impl PacketBuilder {
    /// Starts a packet with this code and Identifier.
    pub fn new(code: Code, identifier: Identifier) -> Self {
        Self { code, identifier, attributes: Vec::with_capacity(128), message_authenticator: false }
    }

    /// The code being built.
    pub fn code(&self) -> Code {
        self.code
    }

    /// Appends one attribute.
    pub fn attribute(&mut self, typ: u8, value: &[u8]) -> Result<&mut Self, Error> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLong { len: value.len() });
        }
        self.attributes.push(typ);
        self.attributes.push((value.len() + 2) as u8);
        self.attributes.extend_from_slice(value);
        Ok(self)
    }

    /// Appends a Vendor-Specific attribute with one sub-attribute (RFC 2865 §5.26).
    pub fn vendor_attribute(&mut self, vendor: u32, typ: u8, value: &[u8]) -> Result<&mut Self, Error> {
        self.vendor_attributes(vendor, &[(typ, value)])
    }

    /// Appends one Vendor-Specific attribute carrying several sub-attributes.
    pub fn vendor_attributes(&mut self, vendor: u32, subs: &[(u8, &[u8])]) -> Result<&mut Self, Error> {
        let mut data = Vec::with_capacity(MAX_VALUE_LEN);
        data.extend_from_slice(&vendor.to_be_bytes());
        for (typ, value) in subs {
            if value.len() > MAX_VALUE_LEN - 2 {
                return Err(Error::ValueTooLong { len: value.len() });
            }
            data.push(*typ);
            data.push((value.len() + 2) as u8);
            data.extend_from_slice(value);
        }
        self.attribute(VENDOR_SPECIFIC, &data)
    }

    /// Appends an EAP packet, split over as many EAP-Message attributes as needed
    /// (RFC 3579 §3.1). Also requests a Message-Authenticator, which EAP requires.
    pub fn eap_message(&mut self, eap: &[u8]) -> Result<&mut Self, Error> {
        for chunk in eap.chunks(MAX_VALUE_LEN) {
            self.attribute(EAP_MESSAGE, chunk)?;
        }
        self.message_authenticator = true;
        Ok(self)
    }

    /// Requests a Message-Authenticator, placed as the first attribute.
    pub fn message_authenticator(&mut self) -> &mut Self {
        self.message_authenticator = true;
        self
    }

    /// Encodes a request whose authenticator is random octets supplied by the caller
    /// (Access-Request, Status-Server).
    pub fn encode_with_authenticator(
        &self,
        authenticator: Authenticator,
        secret: &SharedSecret,
    ) -> Result<Vec<u8>, Error> {
        let mut out = self.layout(authenticator)?;
        self.sign_message_authenticator(&mut out, None, secret);
        Ok(out)
    }

    /// Encodes a request whose authenticator is computed over the packet
    /// (Accounting-Request, CoA-Request, Disconnect-Request).
    pub fn encode_computed_request(&self, secret: &SharedSecret) -> Result<Vec<u8>, Error> {
        let mut out = self.layout(Authenticator::ZERO)?;
        self.sign_message_authenticator(&mut out, None, secret);
        let auth = packet_md5(&out, &Authenticator::ZERO, secret);
        out[4..HEADER_LEN].copy_from_slice(&auth.0);
        Ok(out)
    }

    /// Encodes a response to a request with authenticator `request`.
    pub fn encode_response(&self, request: &Authenticator, secret: &SharedSecret) -> Result<Vec<u8>, Error> {
        let mut out = self.layout(*request)?;
        self.sign_message_authenticator(&mut out, Some(*request), secret);
        let auth = packet_md5(&out, request, secret);
        out[4..HEADER_LEN].copy_from_slice(&auth.0);
        Ok(out)
    }

    fn layout(&self, authenticator: Authenticator) -> Result<Vec<u8>, Error> {
        let ma_len = if self.message_authenticator { 18 } else { 0 };
        let len = HEADER_LEN + ma_len + self.attributes.len();
        let max = self.code.max_len();
        if len > max {
            return Err(Error::PacketTooLong { len, max });
        }
        let mut out = Vec::with_capacity(len);
        out.push(self.code.to_u8());
        out.push(self.identifier.0);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&authenticator.0);
        if self.message_authenticator {
            out.push(MESSAGE_AUTHENTICATOR);
            out.push(18);
            out.extend_from_slice(&[0; 16]);
        }
        out.extend_from_slice(&self.attributes);
        Ok(out)
    }

    fn sign_message_authenticator(&self, out: &mut [u8], request: Option<Authenticator>, secret: &SharedSecret) {
        if !self.message_authenticator {
            return;
        }
        let mut own = [0u8; 16];
        own.copy_from_slice(&out[4..HEADER_LEN]);
        let basis = message_authenticator_basis(self.code, Authenticator(own), request);
        let at = HEADER_LEN + 2;
        let mac = compute_message_authenticator(out, at, &basis, secret);
        out[at..at + 16].copy_from_slice(&mac);
    }
}
