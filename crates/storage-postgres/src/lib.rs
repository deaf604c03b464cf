//! The PostgreSQL backend of [`portcullis_storage::Store`]: the same sessions, history,
//! authentication events and alerts as the embedded SQLite store, in a database several
//! Portcullis nodes share, each recording its own applied journal position.
//!
//! It does not own the journal: every node keeps its journal as the commit point and its
//! applier ships records here, so a database outage delays the derived data and never
//! an Accounting-Response. The schema is created and upgraded by versioned migrations
//! (`migrations/`) applied in one transaction under an advisory lock, and read-only
//! `radacct` / `radpostauth` views carry FreeRADIUS 3.2's column names.

mod connect;
mod migrate;
mod store;
pub mod testing;

pub use connect::{DatabaseUrl, TlsOptions, redact};
pub use migrate::{MIGRATIONS, Migration};
pub use store::PgStore;
