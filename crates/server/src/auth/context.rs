//! What every stage of the authentication pipeline reads: the client table, caches,
//! policies, user stores, the second-factor service and the audit outputs.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use portcullis_auth::CredentialCache;
use portcullis_auth::policy::NetworkPolicy;
use portcullis_radius::Dictionary;
use portcullis_radius::dedup::DuplicateCache;

use crate::clients::ClientTable;

/// What the authentication listeners read for each request: a snapshot that a reload
/// replaces. Conversations, the duplicate cache, the audit log and the count of pending
/// work are shared by every snapshot (the `Arc` fields), so EAP rounds, pushes and
/// retransmits carry on across a reload.
pub type LiveAuth = crate::live::Live<AuthShared>;

/// State shared by every authentication socket.
pub struct AuthShared {
    /// The client table the accounting listeners read too.
    pub clients: Arc<crate::live::Live<ClientTable>>,
    pub cache: Arc<Mutex<DuplicateCache>>,
    pub eap: Arc<Mutex<super::conversations::EapTable>>,
    /// PEAP settings when a server certificate is configured.
    pub peap: Option<portcullis_auth::peap::PeapConfig>,
    /// The method offered first after EAP-Response/Identity.
    pub eap_default: crate::config::EapMethod,
    pub credentials: Mutex<CredentialCache>,
    pub policies: Vec<NetworkPolicy>,
    /// `auth.time_zone`: policy time windows and NPS log times.
    pub zone: crate::zone::Zone,
    /// Connection-request policies and the user stores they name.
    pub router: crate::directory::Router,
    pub dictionary: Dictionary,
    /// The audit log file, written by its own thread.
    pub audit: Arc<crate::audit::AuditLog>,
    /// The second factor, when configured.
    pub mfa: Option<super::factor::Mfa>,
    /// NPS-format log files, when configured.
    pub nps_log: Option<Mutex<crate::npslog::NpsLog>>,
    /// Authentication events on their way to the store.
    pub applier: crate::applier::AuthEventSender,
    pub pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for AuthShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthShared").field("policies", &self.policies.len()).finish_non_exhaustive()
    }
}

impl AuthShared {
    /// The network policy with exactly this name.
    pub(crate) fn policy(&self, name: &str) -> Option<&NetworkPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }
}
