//! The values the pipeline's stages hand each other: the decided identity, a grant by
//! a network policy, a refusal. Data only; the stages that make them are `identity`,
//! `credentials`, `eap` and `policy`.

use portcullis_auth::mschap::MschapError;
use portcullis_auth::policy::{MfaMode, reason};

use crate::directory::{Account, Route};

/// Why a request cannot go on: NPS reason code, MS-CHAP error and explanation.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub reason: u32,
    pub mschap_error: MschapError,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(reason: u32, mschap_error: MschapError, message: impl Into<String>) -> Self {
        Self { reason, mschap_error, message: message.into() }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::new(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, message)
    }
}

/// The decided account, with the store it came from.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub route: Route,
    pub account: Account,
}

impl Identity {
    /// The stable identity second factors, lockouts and pushes are keyed by.
    pub(crate) fn key(&self) -> &str {
        &self.account.key
    }

    /// The account's own name, for the audit trail and profiles.
    pub(crate) fn name(&self) -> &str {
        &self.account.name
    }
}

/// A granting policy and the second-factor mode it asks for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub policy: String,
    /// `None`: the policy has no `mfa` key (the `[mfa] policy_default` applies).
    pub mfa: Option<MfaMode>,
}

/// A refusal by policy: the denying policy (if one matched) and why.
#[derive(Debug, Clone)]
pub(crate) struct Denied {
    pub policy: Option<String>,
    pub refusal: Refusal,
}
