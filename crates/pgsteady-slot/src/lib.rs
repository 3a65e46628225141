#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod error;
mod lsn;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod read;
mod watch;

use std::fmt;

pub use error::Error;
pub use lsn::{Lsn, LsnError};
pub use read::{check, check_all, read, read_all, validate_name};
pub use watch::{SlotWatch, WatchSnapshot};

/// `physical` or `logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotType {
    /// A physical slot (a streaming standby, pg_receivewal).
    Physical,
    /// A logical slot (an output plugin decodes changes).
    Logical,
}

impl SlotType {
    /// `physical` or `logical`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SlotType::Physical => "physical",
            SlotType::Logical => "logical",
        }
    }
}

/// `pg_replication_slots.wal_status` (PostgreSQL 13+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WalStatus {
    /// The slot's WAL is within `max_wal_size`.
    Reserved,
    /// Beyond `max_wal_size` but kept by the slot (within `max_slot_wal_keep_size`).
    Extended,
    /// Not reserved any more: removed at the next checkpoint unless the slot catches up.
    Unreserved,
    /// Required WAL was removed (or the slot was invalidated): the slot cannot be used.
    Lost,
}

impl WalStatus {
    /// The server's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            WalStatus::Reserved => "reserved",
            WalStatus::Extended => "extended",
            WalStatus::Unreserved => "unreserved",
            WalStatus::Lost => "lost",
        }
    }

    /// Parses the server's spelling.
    pub fn parse(s: &str) -> Option<WalStatus> {
        Some(match s {
            "reserved" => WalStatus::Reserved,
            "extended" => WalStatus::Extended,
            "unreserved" => WalStatus::Unreserved,
            "lost" => WalStatus::Lost,
            _ => return None,
        })
    }
}

/// One row of `pg_replication_slots`: the facts a [`Verdict`] is drawn from. A column the
/// server does not have (older versions) is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotFacts {
    /// `slot_name`.
    pub name: String,
    /// `slot_type`.
    pub slot_type: SlotType,
    /// `plugin` (logical slots).
    pub plugin: Option<String>,
    /// `database` (logical slots).
    pub database: Option<String>,
    /// `temporary` (PostgreSQL 10+).
    pub temporary: Option<bool>,
    /// `active`: a consumer is attached now.
    pub active: bool,
    /// `active_pid`: the attached consumer's walsender process.
    pub active_pid: Option<i32>,
    /// `restart_lsn`: the oldest WAL the slot holds (`None` once lost or never reserved).
    pub restart_lsn: Option<Lsn>,
    /// `confirmed_flush_lsn` (logical slots): what the consumer confirmed it has.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `wal_status` (PostgreSQL 13+).
    pub wal_status: Option<WalStatus>,
    /// `safe_wal_size` (PostgreSQL 13+): bytes of WAL that can still be written before the
    /// slot is in danger of becoming lost; negative once unreserved, `None` when
    /// `max_slot_wal_keep_size = -1` (unlimited) or lost.
    pub safe_wal_size: Option<i64>,
    /// `conflicting` (PostgreSQL 16+): a logical slot invalidated by a recovery conflict.
    pub conflicting: Option<bool>,
    /// `invalidation_reason` (PostgreSQL 17+).
    pub invalidation_reason: Option<String>,
    /// `inactive_since` (PostgreSQL 17+), as the server printed the timestamp.
    pub inactive_since: Option<String>,
}

impl SlotFacts {
    /// A slot with only its name and type known (everything else `None` / inactive): for
    /// callers that read `pg_replication_slots` themselves, then set the public fields.
    pub fn new(name: impl Into<String>, slot_type: SlotType) -> SlotFacts {
        SlotFacts {
            name: name.into(),
            slot_type,
            plugin: None,
            database: None,
            temporary: None,
            active: false,
            active_pid: None,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            wal_status: None,
            safe_wal_size: None,
            conflicting: None,
            invalidation_reason: None,
            inactive_since: None,
        }
    }

    /// Whether the slot can no longer be used: `wal_status = 'lost'`, `conflicting`, or an
    /// `invalidation_reason`.
    pub fn is_lost(&self) -> bool {
        self.wal_status == Some(WalStatus::Lost)
            || self.conflicting == Some(true)
            || self.invalidation_reason.is_some()
    }
}

/// Where the server's WAL is, and what kind of server it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerPosition {
    /// `pg_current_wal_lsn()` on a primary, `pg_last_wal_replay_lsn()` on a standby.
    pub lsn: Lsn,
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// `server_version_num`, e.g. 150004.
    pub version_num: u32,
    /// The timeline of a primary's current WAL file (`None` on a standby). Above 1 the
    /// cluster was promoted (or restored to a point in time) since it was created.
    pub timeline: Option<u32>,
}

impl ServerPosition {
    /// A position read elsewhere (for tests and callers with their own query).
    pub const fn new(lsn: Lsn, in_recovery: bool, version_num: u32, timeline: Option<u32>) -> Self {
        ServerPosition {
            lsn,
            in_recovery,
            version_num,
            timeline,
        }
    }
}

/// What holds for a slot. Ordered from best to worst: `Ord` compares severity, so the worst
/// of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SlotState {
    /// Exists, active, WAL reserved; the offset (if given) can be used.
    Ok,
    /// No consumer attached; it retains WAL. A warning.
    Inactive,
    /// `wal_status = 'extended'`: holds more WAL than `max_wal_size`. A warning.
    Extended,
    /// `wal_status = 'unreserved'`: its WAL goes at the next checkpoint. A warning.
    Unreserved,
    /// The offset is below what the slot can still deliver.
    Gap,
    /// The offset is beyond this server's WAL.
    Ahead,
    /// The slot's WAL was removed or the slot invalidated: decoding fails with 55000.
    Lost,
    /// No such slot on this server.
    Missing,
}

impl SlotState {
    /// Every state, best to worst.
    pub const ALL: [SlotState; 8] = [
        SlotState::Ok,
        SlotState::Inactive,
        SlotState::Extended,
        SlotState::Unreserved,
        SlotState::Gap,
        SlotState::Ahead,
        SlotState::Lost,
        SlotState::Missing,
    ];

    /// A stable lowercase name, for output, JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            SlotState::Ok => "ok",
            SlotState::Inactive => "inactive",
            SlotState::Extended => "extended",
            SlotState::Unreserved => "unreserved",
            SlotState::Gap => "gap",
            SlotState::Ahead => "ahead",
            SlotState::Lost => "lost",
            SlotState::Missing => "missing",
        }
    }

    /// `inactive`, `extended`, `unreserved`: the slot works but needs attention.
    pub const fn is_warning(self) -> bool {
        matches!(
            self,
            SlotState::Inactive | SlotState::Extended | SlotState::Unreserved
        )
    }

    /// `missing`, `lost`, `gap`, `ahead`: the consumer cannot resume from its offset and
    /// must take a new snapshot.
    pub const fn blocks_offset(self) -> bool {
        matches!(
            self,
            SlotState::Missing | SlotState::Lost | SlotState::Gap | SlotState::Ahead
        )
    }
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classification of one slot against the server's position and an optional consumer
/// offset, with the facts it was drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// The slot's name.
    pub slot: String,
    /// The worst of [`states`](Self::states).
    pub state: SlotState,
    /// Every state that holds, best to worst; `[Ok]` when nothing else does.
    pub states: Vec<SlotState>,
    /// The row read (`None`: missing).
    pub facts: Option<SlotFacts>,
    /// The server's position, read in the same round trip.
    pub position: ServerPosition,
    /// The consumer's offset, if one was given.
    pub offset: Option<Lsn>,
    /// Bytes of WAL the slot holds: position - `restart_lsn`.
    pub retained_bytes: Option<u64>,
    /// How far the consumer is behind: position - offset, or position - `confirmed_flush_lsn`
    /// without an offset (position - `restart_lsn` for a physical slot).
    pub lag_bytes: Option<u64>,
    /// For `gap`: the bytes of WAL between the offset and the slot's start
    /// (`confirmed_flush_lsn`, or `restart_lsn` for a physical slot) that cannot be replayed.
    pub gap_bytes: Option<u64>,
    /// For `ahead`: the bytes by which the offset is beyond the server's position.
    pub ahead_bytes: Option<u64>,
}

/// Classifies `facts` (`None`: no such slot) at `position`, for a consumer at `offset`.
///
/// # Examples
///
/// ```
/// use pgsteady_slot::{Lsn, ServerPosition, SlotState, classify};
///
/// let position = ServerPosition::new("0/5000000".parse()?, false, 150004, Some(1));
/// let verdict = classify("debezium", None, position, None);
/// assert_eq!(verdict.state, SlotState::Missing);
/// assert!(!verdict.offset_usable());
/// # Ok::<(), pgsteady_slot::LsnError>(())
/// ```
pub fn classify(
    name: &str,
    facts: Option<SlotFacts>,
    position: ServerPosition,
    offset: Option<Lsn>,
) -> Verdict {
    let mut states = Vec::new();
    let ahead_bytes = offset
        .filter(|o| *o > position.lsn)
        .map(|o| o.bytes_after(position.lsn));
    let mut gap_bytes = None;
    let (mut retained_bytes, mut lag_bytes) = (None, None);
    match &facts {
        None => states.push(SlotState::Missing),
        Some(f) => {
            if f.is_lost() {
                states.push(SlotState::Lost);
            }
            match f.wal_status {
                Some(WalStatus::Unreserved) => states.push(SlotState::Unreserved),
                Some(WalStatus::Extended) => states.push(SlotState::Extended),
                _ => {}
            }
            if !f.active {
                states.push(SlotState::Inactive);
            }
            // Where the slot can deliver from: what a logical consumer confirmed, or the
            // oldest WAL a physical slot holds.
            let start = match f.slot_type {
                SlotType::Logical => f.confirmed_flush_lsn,
                SlotType::Physical => f.restart_lsn,
            };
            if let (Some(o), Some(start)) = (offset, start)
                && o < start
            {
                states.push(SlotState::Gap);
                gap_bytes = Some(start.bytes_after(o));
            }
            retained_bytes = f.restart_lsn.map(|r| position.lsn.bytes_after(r));
            lag_bytes = offset
                .or(start)
                .or(f.restart_lsn)
                .map(|from| position.lsn.bytes_after(from));
        }
    }
    if ahead_bytes.is_some() {
        states.push(SlotState::Ahead);
    }
    if states.is_empty() {
        states.push(SlotState::Ok);
    }
    states.sort();
    states.dedup();
    let state = *states.last().expect("at least one state");
    Verdict {
        slot: name.to_owned(),
        state,
        states,
        facts,
        position,
        offset,
        retained_bytes,
        lag_bytes,
        gap_bytes,
        ahead_bytes,
    }
}

impl Verdict {
    /// Whether `state` holds (among others).
    pub fn has(&self, state: SlotState) -> bool {
        self.states.contains(&state)
    }

    /// The slot exists and the consumer can resume from its offset (if one was given):
    /// nothing worse than a warning holds.
    pub fn offset_usable(&self) -> bool {
        !self.state.blocks_offset()
    }

    /// The warnings that hold (`inactive`, `extended`, `unreserved`).
    pub fn warnings(&self) -> impl Iterator<Item = SlotState> + '_ {
        self.states.iter().copied().filter(|s| s.is_warning())
    }

    /// Where the slot can deliver from: `confirmed_flush_lsn` (logical) or `restart_lsn`.
    pub fn slot_start(&self) -> Option<Lsn> {
        let f = self.facts.as_ref()?;
        match f.slot_type {
            SlotType::Logical => f.confirmed_flush_lsn,
            SlotType::Physical => f.restart_lsn,
        }
    }
}

#[cfg(test)]
mod tests;
