//! The benchmark runners (faults, failover) against real servers, with the naive client and
//! pgsteady (the peers are only built with the `peers` feature, which tests never enable).

mod failover;
mod faults;
