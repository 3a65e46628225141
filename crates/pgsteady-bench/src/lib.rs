//! Side-by-side measurements of `pgsteady::Pool` and the PostgreSQL pools people use today
//! (deadpool-postgres, bb8, sqlx) and the naive tokio-postgres loop, against a real server
//! that the benchmark breaks on purpose.
//!
//! Three binaries, built only with the non-default `peers` feature (so the workspace's tests
//! and lints never build sqlx or bb8):
//!
//! - `pool_throughput`: checkout + `SELECT 1` per second at several concurrencies, every
//!   client caching its prepared statement per connection;
//! - `pool_faults`: 8 workers looping checkout + `SELECT 1` through a fault proxy while the
//!   server is restarted, crashed, has its sessions terminated, or is down for 10 s; per
//!   client the errors callers saw, the time from the server's ready line to the first
//!   success, the longest time without success, the longest call and the connection attempt
//!   rate during the outage.
//!
//! - `failover`: a primary and its streaming standby, 8 workers writing unique keys through
//!   each client given the same multi-host URL (`target_session_attrs=read-write`); the
//!   primary is stopped (fast, immediate) or fenced read-only and the standby promoted; per
//!   client the errors callers saw, promotion to the first acknowledged write, the longest
//!   write gap, and acknowledged writes lost or duplicated on the new primary.
//!
//! ```sh
//! cargo run --release -p pgsteady-bench --features peers --bin pool_throughput
//! cargo run --release -p pgsteady-bench --features peers --bin pool_faults
//! cargo run --release -p pgsteady-bench --features peers --bin failover
//! ```
//!
//! Results and how they were measured: `BENCHMARKS.md` at the workspace root.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod attempts;
pub mod clients;
pub mod failover;
pub mod faults;
mod ours;
#[cfg(feature = "peers")]
mod peers;
mod pgbench;
mod pipelined;
pub mod report;
mod subject;
pub mod throughput;

pub use attempts::{AttemptCounter, SynCounter};
pub use faults::{FaultKind, FaultPlan, RunResult, Summary, fault_table, run_once};
pub use subject::{BoxError, ClientKind, Closing, QUERY, Subject, Target};
pub use throughput::{Sample, ThroughputPlan, ThroughputResults, measure_once};
