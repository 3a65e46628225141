//! A finding: one layer's outcome, the facts behind it and the fix. Every rule returns these;
//! the report is a list of them per host.

use std::time::Duration;

use pgsteady::Reason;
use serde::Serialize;

/// Outcome of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The layer works.
    Ok,
    /// The layer works, with a risk worth knowing (plain text, read-only, few free slots).
    Warn,
    /// The layer is broken: a client stops here.
    Fail,
}

/// One line of the report: a layer's status, the facts seen and, for a failure, the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    /// The layer's name (`dns`, `tcp`, `tls`, `startup`, `auth`, ...; docs/doctor.md).
    pub layer: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was seen (text from outside already escaped).
    pub detail: String,
    /// How long the layer's step took, in milliseconds (one decimal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// Likely causes and fixes (for a failed TCP connect).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// The classification reason, for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The same reason, for the exit code.
    #[serde(skip)]
    pub cause: Option<Reason>,
    /// The concrete change that repairs this layer (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Layer {
    /// A working layer; `took` is how long its step took.
    pub fn ok(layer: &'static str, detail: impl Into<String>, took: Option<Duration>) -> Self {
        Layer {
            layer,
            status: Status::Ok,
            detail: detail.into(),
            ms: took.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
            hints: Vec::new(),
            reason: None,
            cause: None,
            fix: None,
        }
    }

    /// A working layer with a risk.
    pub fn warn(layer: &'static str, detail: impl Into<String>) -> Self {
        Layer {
            status: Status::Warn,
            ..Layer::ok(layer, detail, None)
        }
    }

    /// A broken layer, classified by `reason`.
    pub fn fail(layer: &'static str, detail: impl Into<String>, reason: Reason) -> Self {
        Layer {
            status: Status::Fail,
            reason: Some(reason.as_str()),
            cause: Some(reason),
            ..Layer::ok(layer, detail, None)
        }
    }

    /// Sets the fix.
    #[must_use]
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Whether this layer is broken.
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}
