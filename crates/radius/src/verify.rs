//! [`VerifiedRequest`]: the only way an inbound request reaches policy code.

use crate::attr::{EAP_MESSAGE, PROXY_STATE};
use crate::crypto::{verify_message_authenticator, verify_request_authenticator};
use crate::{Code, Error, Packet, SharedSecret};

/// How strictly Access-Requests are checked (BlastRADIUS, CVE-2024-3596).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Discard any Access-Request without a valid Message-Authenticator.
    pub require_message_authenticator: bool,
    /// Discard Access-Requests that carry Proxy-State but no Message-Authenticator.
    pub limit_proxy_state: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self { require_message_authenticator: true, limit_proxy_state: true }
    }
}

/// A request whose authenticity was checked against the client's shared secret.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedRequest<'a> {
    packet: Packet<'a>,
    message_authenticator: bool,
}

impl<'a> VerifiedRequest<'a> {
    /// Checks a request the way its code requires:
    /// - Accounting-, CoA- and Disconnect-Request: the Request Authenticator
    ///   (RFC 2866 §3, RFC 5176 §3.5), and a Message-Authenticator if present;
    /// - Status-Server: a Message-Authenticator is mandatory (RFC 5997 §3);
    /// - Access-Request: Message-Authenticator per `policy`, and always when
    ///   EAP-Message is present (RFC 3579 §3.2).
    ///
    /// Responses are not requests and are refused with [`Error::UnknownCode`].
    pub fn verify(packet: Packet<'a>, secret: &SharedSecret, policy: VerifyPolicy) -> Result<Self, Error> {
        let code = packet.code();
        if code.is_response() || code == Code::StatusClient {
            return Err(Error::UnknownCode(code.to_u8()));
        }
        if code.has_computed_request_authenticator() {
            verify_request_authenticator(&packet, secret)?;
        }
        let message_authenticator = verify_message_authenticator(&packet, secret, None)?;
        if !message_authenticator {
            let required = match code {
                Code::StatusServer => true,
                Code::AccessRequest => {
                    policy.require_message_authenticator
                        || packet.has_attribute(EAP_MESSAGE)
                        || (policy.limit_proxy_state && packet.has_attribute(PROXY_STATE))
                }
                _ => false,
            };
            if required {
                return Err(Error::MissingMessageAuthenticator);
            }
        }
        Ok(Self { packet, message_authenticator })
    }

    /// Wraps a packet that was verified before it was stored (raw packets are kept only
    /// after verification). Use only for packets read back from Portcullis's own storage.
    pub fn assume_verified_from_storage(packet: Packet<'a>) -> Self {
        Self { packet, message_authenticator: false }
    }

    /// The verified packet.
    pub fn packet(&self) -> &Packet<'a> {
        &self.packet
    }

    /// Whether the request carried a valid Message-Authenticator.
    pub fn had_message_authenticator(&self) -> bool {
        self.message_authenticator
    }
}

impl<'a> std::ops::Deref for VerifiedRequest<'a> {
    type Target = Packet<'a>;

    fn deref(&self) -> &Self::Target {
        &self.packet
    }
}
