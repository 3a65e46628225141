#![doc = include_str!("../README.md")]
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
    pub use pgsteady::connect::{MAX_OWN_BYTES, MAX_OWN_ROWS, bounded_simple_query};
}

pub use finding::{Layer, Status};
pub use report::{Broken, HostReport, Report, first_broken, libpq_pick, session_type_fixes};
pub use run::{Options, parse_patroni_url, run};
pub use server::ServerFacts;
