//! The report over every host, and the rules across hosts: the first broken layer, the host
//! a libpq client would pick, and the fix for a host of the wrong session type.

use pgsteady::{Reason, SessionState, TargetSessionAttrs};
use serde::Serialize;

use crate::finding::{Layer, Status};
use crate::server::describe;

/// The layers checked for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// `HOST:PORT`, the socket directory, or a Patroni member.
    pub host: String,
    /// Its layers, in order, up to the first broken one.
    pub layers: Vec<Layer>,
    /// The session type seen (when a session started and answered).
    #[serde(skip)]
    pub state: Option<SessionState>,
}

impl HostReport {
    /// Whether every layer works.
    pub fn works(&self) -> bool {
        self.layers.iter().all(|l| l.status != Status::Fail)
    }
}

/// The first broken layer of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    /// Its layer.
    pub layer: &'static str,
    /// Its host (`None` for the configuration).
    pub host: Option<String>,
    /// What was seen.
    pub detail: String,
    /// Likely causes.
    pub hints: Vec<String>,
    /// The concrete change that repairs the broken layer.
    pub fix: Option<String>,
    /// Its classification, for the exit code.
    #[serde(skip)]
    pub cause: Option<Reason>,
}

impl Broken {
    fn of(host: &str, l: &Layer) -> Self {
        Broken {
            layer: l.layer,
            host: Some(host.to_owned()),
            detail: l.detail.clone(),
            hints: l.hints.clone(),
            fix: l.fix.clone(),
            cause: l.cause,
        }
    }
}

/// Doctor's findings over the whole host list.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The redacted configuration.
    pub config: String,
    /// Whether a host works and nothing is broken.
    pub ok: bool,
    /// The process exit code (set by the caller, which owns the exit-code table).
    pub exit_code: u8,
    /// The first broken layer, if any.
    pub broken: Option<Broken>,
    /// Every host checked.
    pub hosts: Vec<HostReport>,
    /// The host a libpq client with this configuration would connect to now: the first in
    /// the list whose layers all work and whose session matches `target_session_attrs`
    /// (`prefer-standby`: a standby first, else any); `None` when none would.
    pub libpq_pick: Option<String>,
    /// Hosts not checked because --max-time ran out.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_checked: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// The report for a configuration that cannot be used: nothing was tried.
    pub fn config_error(detail: String, cause: Option<Reason>) -> Self {
        Report {
            config: String::new(),
            ok: false,
            exit_code: 0,
            broken: Some(Broken {
                layer: "config",
                host: None,
                detail,
                hints: Vec::new(),
                fix: Some(
                    "correct the part of the connection string named above (see `pgsteady \
                     doctor --help` for the forms accepted)"
                        .to_owned(),
                ),
                cause,
            }),
            hosts: Vec::new(),
            libpq_pick: None,
            not_checked: 0,
        }
    }

    /// Whether some host works.
    pub fn healthy(&self) -> bool {
        self.hosts.iter().any(HostReport::works)
    }
}

/// The first broken layer when no host works, else the first failing `patroni` layer (a
/// disagreement between Patroni and a server fails the run even when a host works).
pub fn first_broken(hosts: &[HostReport]) -> Option<Broken> {
    let healthy = hosts.iter().any(HostReport::works);
    let any_host = (!healthy)
        .then(|| {
            hosts.iter().find_map(|h| {
                h.layers
                    .iter()
                    .find(|l| l.status == Status::Fail)
                    .map(|l| Broken::of(&h.host, l))
            })
        })
        .flatten();
    any_host.or_else(|| {
        hosts.iter().find_map(|h| {
            h.layers
                .iter()
                .find(|l| l.layer == "patroni" && l.status == Status::Fail)
                .map(|l| Broken::of(&h.host, l))
        })
    })
}

fn in_recovery(h: &HostReport) -> bool {
    h.state.is_some_and(|s| s.in_hot_standby == Some(true))
}

/// Which host libpq's host selection (`fe-connect.c`) would end on, from what doctor saw of
/// each: hosts in order, the first that connects and matches `want`; for `prefer-standby`
/// a standby first, then any host (libpq's second pass). With `load_balance_hosts=random`
/// the order is random, so every matching host is named.
pub fn libpq_pick(hosts: &[HostReport], want: TargetSessionAttrs, random: bool) -> Option<String> {
    let matching: Vec<&HostReport> = match want {
        TargetSessionAttrs::PreferStandby => {
            let standbys: Vec<&HostReport> = hosts
                .iter()
                .filter(|h| h.works() && in_recovery(h))
                .collect();
            if standbys.is_empty() {
                hosts.iter().filter(|h| h.works()).collect()
            } else {
                standbys
            }
        }
        _ => hosts
            .iter()
            .filter(|h| h.works())
            .filter(|h| h.state.is_none_or(|s| s.satisfies(want) != Some(false)))
            .collect(),
    };
    match (random, matching.as_slice()) {
        (_, []) => None,
        (false, [first, ..]) | (true, [first]) => Some(first.host.clone()),
        (true, all) => Some(format!(
            "one of {} (load_balance_hosts=random)",
            all.iter()
                .map(|h| h.host.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A host that is not the session type asked for: name the host in the list that is, or say
/// that none is.
pub fn session_type_fixes(hosts: &mut [HostReport], want: TargetSessionAttrs) {
    let matching: Vec<(String, &'static str)> = hosts
        .iter()
        .filter_map(|h| {
            let s = h.state.filter(|s| s.satisfies(want) == Some(true))?;
            Some((h.host.clone(), describe(s)))
        })
        .collect();
    for h in hosts.iter_mut() {
        let Some(state) = h.state else { continue };
        let Some(layer) = h
            .layers
            .iter_mut()
            .find(|l| l.layer == "recovery" && l.status == Status::Fail)
        else {
            continue;
        };
        let unlock = if state.default_transaction_read_only == Some(true)
            && state.in_hot_standby != Some(true)
        {
            " (if this server should take writes, end the read-only default: ALTER SYSTEM RESET \
             default_transaction_read_only; SELECT pg_reload_conf())"
        } else {
            ""
        };
        layer.fix = Some(match matching.first() {
            Some((other, desc)) => format!(
                "{other} in the host list is {desc} and satisfies \
                 target_session_attrs={want}: a connect skips {} and uses {other}; list \
                 {other} first to save an attempt{unlock}",
                h.host
            ),
            None => format!(
                "no host in the list satisfies target_session_attrs={want} ({} is {}): add the \
                 primary to the host list (host=a,b,...), or relax target_session_attrs{unlock}",
                h.host,
                describe(state)
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetSessionAttrs as T;

    fn host(name: &str, state: Option<(bool, bool)>, works: bool) -> HostReport {
        let mut layers = vec![Layer::ok("tcp", "connected", None)];
        if !works {
            layers.push(Layer::fail("auth", "refused", Reason::InvalidPassword));
        }
        HostReport {
            host: name.to_owned(),
            layers,
            state: state.map(|(r, ro)| SessionState::new(r, ro)),
        }
    }

    const PRIMARY: Option<(bool, bool)> = Some((false, false));
    const STANDBY: Option<(bool, bool)> = Some((true, true));

    #[test]
    fn libpq_pick_follows_the_host_order_and_the_session_type() {
        let hosts = [
            host("a", None, false),
            host("b", STANDBY, true),
            host("c", PRIMARY, true),
        ];
        assert_eq!(libpq_pick(&hosts, T::Any, false).as_deref(), Some("b"));
        assert_eq!(
            libpq_pick(&hosts, T::ReadWrite, false).as_deref(),
            Some("c")
        );
        assert_eq!(libpq_pick(&hosts, T::Primary, false).as_deref(), Some("c"));
        assert_eq!(libpq_pick(&hosts, T::Standby, false).as_deref(), Some("b"));
        assert_eq!(libpq_pick(&hosts, T::ReadOnly, false).as_deref(), Some("b"));
        assert_eq!(
            libpq_pick(&hosts, T::Any, true).as_deref(),
            Some("one of b, c (load_balance_hosts=random)")
        );
        // prefer-standby: a standby first even when a primary is listed before it, any
        // server when no standby works.
        let hosts = [host("p", PRIMARY, true), host("s", STANDBY, true)];
        assert_eq!(
            libpq_pick(&hosts, T::PreferStandby, false).as_deref(),
            Some("s")
        );
        let hosts = [host("p", PRIMARY, true), host("s", STANDBY, false)];
        assert_eq!(
            libpq_pick(&hosts, T::PreferStandby, false).as_deref(),
            Some("p")
        );
        assert_eq!(libpq_pick(&hosts, T::Standby, false), None);
    }

    #[test]
    fn first_broken_is_none_while_a_host_works_unless_patroni_disagrees() {
        let hosts = [host("a", None, false), host("b", PRIMARY, true)];
        assert!(first_broken(&hosts).is_none());
        let hosts = [host("a", None, false), host("b", None, false)];
        let b = first_broken(&hosts).unwrap();
        assert_eq!((b.layer, b.host.as_deref()), ("auth", Some("a")));
        let mut patroni = host("b", PRIMARY, true);
        patroni.layers.push(Layer {
            status: Status::Fail,
            ..Layer::ok("patroni", "split brain", None)
        });
        let b = first_broken(&[host("a", PRIMARY, true), patroni]).unwrap();
        assert_eq!((b.layer, b.cause), ("patroni", None));
    }

    #[test]
    fn session_type_fix_names_the_host_that_would_do() {
        let wrong = |name: &str, state| {
            let mut h = host(name, state, true);
            h.layers
                .push(Layer::fail("recovery", "standby", Reason::WrongSessionType));
            h
        };
        let mut hosts = [wrong("s:5432", STANDBY), host("p:5432", PRIMARY, true)];
        session_type_fixes(&mut hosts, T::ReadWrite);
        let fix = hosts[0].layers[1].fix.clone().unwrap();
        assert!(
            fix.starts_with("p:5432 in the host list is primary, read-write and satisfies"),
            "{fix}"
        );
        let mut hosts = [wrong("f:5432", Some((false, true)))];
        session_type_fixes(&mut hosts, T::ReadWrite);
        let fix = hosts[0].layers[1].fix.clone().unwrap();
        assert!(
            fix.starts_with("no host in the list satisfies target_session_attrs=read-write"),
            "{fix}"
        );
        assert!(
            fix.contains("ALTER SYSTEM RESET default_transaction_read_only"),
            "{fix}"
        );
    }
}
