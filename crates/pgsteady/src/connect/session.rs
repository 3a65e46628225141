//! What a server reports about itself at startup and when it changes (PostgreSQL 14+):
//! `in_hot_standby` and `default_transaction_read_only`, and libpq's rules for matching them
//! against `target_session_attrs`.

// Code a server reaches: a message or row it shapes must never index out of bounds or
// unwrap into a panic.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use std::fmt;

use crate::config::TargetSessionAttrs;

/// The session attributes a server reported with ParameterStatus messages.
///
/// PostgreSQL 14 and later report `in_hot_standby` and `default_transaction_read_only` at
/// startup and again whenever they change: `in_hot_standby` turns `off` when a standby is
/// promoted, `default_transaction_read_only` follows `ALTER SYSTEM` + reload. A backend sends
/// the new value just before its next ReadyForQuery, so an idle session learns of a change
/// only when it next runs a statement (which itself already runs under the new value).
///
/// A field is `None` when the server did not report it: servers before 14, and proxies that
/// do not forward it (PgBouncer forwards only the parameters it tracks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionState {
    /// `in_hot_standby`: `Some(true)` on a standby (in recovery, read-only).
    pub in_hot_standby: Option<bool>,
    /// `default_transaction_read_only`: `Some(true)` on a server fenced read-only (or a
    /// session started with `-c default_transaction_read_only=on`).
    pub default_transaction_read_only: Option<bool>,
}

impl SessionState {
    /// A state with both values known.
    pub const fn new(in_hot_standby: bool, default_transaction_read_only: bool) -> Self {
        SessionState {
            in_hot_standby: Some(in_hot_standby),
            default_transaction_read_only: Some(default_transaction_read_only),
        }
    }

    /// Reads the two parameters through `parameter` (e.g.
    /// `|name| connection.parameter(name)` on a `tokio_postgres::Connection`).
    pub fn from_parameters<'a>(parameter: impl Fn(&str) -> Option<&'a str>) -> Self {
        SessionState {
            in_hot_standby: parameter("in_hot_standby").and_then(parse_bool),
            default_transaction_read_only: parameter("default_transaction_read_only")
                .and_then(parse_bool),
        }
    }

    /// Whether both values were reported, so [`SessionState::satisfies`] answers for every
    /// `target_session_attrs`.
    pub const fn is_known(&self) -> bool {
        self.in_hot_standby.is_some() && self.default_transaction_read_only.is_some()
    }

    /// Whether a session in this state satisfies `want`, by libpq's rules; `None` when the
    /// answer needs a value the server did not report (libpq then asks with a query, and so
    /// does [`Connector`](crate::Connector)).
    ///
    /// - `any`: always;
    /// - `read-write`: neither `in_hot_standby` nor `default_transaction_read_only` is on
    ///   (both needed, unless `in_hot_standby` is on);
    /// - `read-only`: either is on (both needed, unless `in_hot_standby` is on);
    /// - `primary`: `in_hot_standby` off; `standby` and `prefer-standby`: on.
    ///
    /// For `prefer-standby` this is libpq's first pass over the host list; when no host
    /// passes it, libpq's second pass takes any server ([`Connector`](crate::Connector) does
    /// the same, and so does `pgsteady doctor`'s pick). This is the one copy of these rules:
    /// the connector, the pool and doctor all ask it.
    pub fn satisfies(&self, want: TargetSessionAttrs) -> Option<bool> {
        // libpq queries when either value is missing; a reported `in_hot_standby=on` alone
        // already proves read-only (the `||` stops there), which saves that query and cannot
        // change the verdict.
        let read_only = || Some(self.in_hot_standby? || self.default_transaction_read_only?);
        match want {
            TargetSessionAttrs::ReadWrite => read_only().map(|ro| !ro),
            TargetSessionAttrs::ReadOnly => read_only(),
            TargetSessionAttrs::Primary => self.in_hot_standby.map(|s| !s),
            TargetSessionAttrs::Standby | TargetSessionAttrs::PreferStandby => self.in_hot_standby,
            _ => Some(true),
        }
    }

    /// Packs the state into one byte (two bits per value) for an atomic.
    pub(crate) const fn pack(self) -> u8 {
        const fn bits(v: Option<bool>) -> u8 {
            match v {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            }
        }
        bits(self.in_hot_standby) | (bits(self.default_transaction_read_only) << 2)
    }

    /// The inverse of [`SessionState::pack`].
    pub(crate) const fn unpack(byte: u8) -> Self {
        const fn value(bits: u8) -> Option<bool> {
            match bits & 3 {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            }
        }
        SessionState {
            in_hot_standby: value(byte),
            default_transaction_read_only: value(byte >> 2),
        }
    }
}

/// "a standby (in recovery)", "a primary in read-only mode", "a read-write primary" (as in
/// connect errors), or "a server that did not report its state".
impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_hot_standby.is_none() && self.default_transaction_read_only.is_none() {
            return f.write_str("a server that did not report its state");
        }
        f.write_str(describe(
            self.in_hot_standby.unwrap_or(false),
            self.default_transaction_read_only.unwrap_or(false),
        ))
    }
}

/// The words for a server's state in errors (one wording whether it came from ParameterStatus
/// or from the query fallback).
pub(super) fn describe(in_recovery: bool, read_only: bool) -> &'static str {
    match (in_recovery, read_only) {
        (true, _) => "a standby (in recovery)",
        (false, true) => "a primary in read-only mode",
        (false, false) => "a read-write primary",
    }
}

/// GUC boolean spelling as reported: `on` / `off` (the server reports the canonical form).
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "on" | "true" => Some(true),
        "off" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetSessionAttrs as T;

    const ALL: [T; 6] = [
        T::Any,
        T::ReadWrite,
        T::ReadOnly,
        T::Primary,
        T::Standby,
        T::PreferStandby,
    ];

    fn answers(state: SessionState) -> Vec<Option<bool>> {
        ALL.iter().map(|w| state.satisfies(*w)).collect()
    }

    #[test]
    fn libpq_rules_for_every_target_and_state() {
        let (y, n) = (Some(true), Some(false));
        // any, read-write, read-only, primary, standby, prefer-standby
        assert_eq!(
            answers(SessionState::new(false, false)),
            [y, y, n, y, n, n],
            "read-write primary"
        );
        assert_eq!(
            answers(SessionState::new(false, true)),
            [y, n, y, y, n, n],
            "fenced primary: still a primary, but read-only"
        );
        assert_eq!(
            answers(SessionState::new(true, false)),
            [y, n, y, n, y, y],
            "standby"
        );
        assert_eq!(
            answers(SessionState::default()),
            [y, None, None, None, None, None],
            "nothing reported: a query decides"
        );
        let only_read_only = SessionState {
            in_hot_standby: None,
            default_transaction_read_only: Some(false),
        };
        assert_eq!(answers(only_read_only), [y, None, None, None, None, None]);
        // A reported standby is read-only whatever default_transaction_read_only is.
        let only_standby = SessionState {
            in_hot_standby: Some(true),
            default_transaction_read_only: None,
        };
        assert_eq!(answers(only_standby), [y, n, y, n, y, y]);
    }

    #[test]
    fn parses_the_reported_spelling() {
        let params = [
            ("in_hot_standby", "on"),
            ("default_transaction_read_only", "off"),
        ];
        let get = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(
            SessionState::from_parameters(get),
            SessionState::new(true, false)
        );
        assert_eq!(
            SessionState::from_parameters(|_| None),
            SessionState::default()
        );
        assert_eq!(
            SessionState::from_parameters(|_| Some("maybe")),
            SessionState::default()
        );
    }

    #[test]
    fn pack_round_trips() {
        for ihs in [None, Some(false), Some(true)] {
            for ro in [None, Some(false), Some(true)] {
                let s = SessionState {
                    in_hot_standby: ihs,
                    default_transaction_read_only: ro,
                };
                assert_eq!(SessionState::unpack(s.pack()), s);
            }
        }
    }
}
