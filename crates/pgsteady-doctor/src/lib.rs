//! The logic of `pgsteady doctor`: walk the layers between this process and the database and
//! name the first broken one: config, DNS, TCP (with the likely cause of a refused port), TLS,
//! startup, authentication, database, server version, recovery / read-only, connection
//! headroom, round-trip time, replication slots (a warning for inactive, at-risk and lost
//! ones), a pooler in front, and Patroni's view. Every failed layer carries a `fix`: the
//! concrete change, found by bounded, read-only probing (docs/doctor.md lists them).
//!
//! Probes gather facts (plain structs: [`ServerFacts`], ...); rules turn facts into
//! [`Layer`]s (layer, status, facts, fix) and need no server. The command line (arguments,
//! rendering, exit codes) is in pgsteady-cli.
//!
//! Everything from outside (a server's answers, certificate names, file contents and paths)
//! is escaped before it reaches a layer's text, and every query doctor runs is capped in rows
//! and bytes.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod certs;
mod compose;
mod finding;
mod host;
mod listeners;
#[cfg(test)]
mod module_graph;
mod names;
mod patroni;
mod pooler;
mod query;
mod report;
mod run;
pub mod server;
mod session;
mod slots;
mod sockets;
mod wire;

/// The core's bounded simple query, for the CLI's `check`: the core exposes it only behind
/// its `probe` feature, which this crate alone enables.
pub mod probe {
    pub use pgsteady::connect::{MAX_OWN_ROWS, bounded_simple_query};
}

pub use finding::{Layer, Status};
pub use report::{Broken, HostReport, Report, first_broken, libpq_pick, session_type_fixes};
pub use run::{Options, parse_patroni_url, run};
pub use server::ServerFacts;
