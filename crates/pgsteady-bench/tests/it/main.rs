//! The benchmark's fault runner against a real server, with the naive client (the peers are
//! only built with the `peers` feature, which tests never enable).

mod faults;
