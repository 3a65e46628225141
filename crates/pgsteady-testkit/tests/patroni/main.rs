//! Tests of the Patroni harness against a real Patroni cluster (etcd, two nodes, HAProxy).
//!
//! Ignored by default (each needs a cluster: seconds to boot, many processes); run them with
//! `cargo test -p pgsteady-testkit --test patroni -- --ignored` (`.ci/run` does).

mod explore;
