//! pgsteady
