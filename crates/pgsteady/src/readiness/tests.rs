use std::time::Duration;

use super::*;
use crate::ErrorKind;

fn refused() -> Error {
    Error::new(ErrorKind::Connect, "connection refused").with_reason(Reason::Refused)
}

fn bad_password() -> Error {
    Error::new(ErrorKind::Connect, "password authentication failed")
        .with_reason(Reason::InvalidPassword)
}

#[test]
fn starts_in_starting_until_the_first_success() {
    let r = Readiness::new();
    let report = r.check();
    assert_eq!(report.state, ReadyState::Starting);
    assert_eq!(report.reason, Some("no_connection_yet"));
    assert_eq!(report.http_status(), 503);
    r.record_ok();
    let report = r.check();
    assert_eq!(report.state, ReadyState::Ready);
    assert_eq!(report.reason, None);
    assert!(report.last_success_age.unwrap() < Duration::from_secs(1));
    assert_eq!(report.http_status(), 200);
}

#[test]
fn a_transient_failure_is_degraded_within_the_grace_period_and_not_ready_after() {
    let r = Readiness::builder()
        .grace(Duration::from_secs(3600))
        .build();
    r.record_ok();
    r.record_error(&refused());
    let report = r.check();
    assert_eq!(report.state, ReadyState::Degraded);
    assert_eq!(report.reason, Some("refused"));
    assert_eq!(report.error, Some(Reason::Refused));
    assert!(report.failing_for.is_some());
    assert!(report.is_ready());

    let r = Readiness::builder().grace(Duration::ZERO).build();
    r.record_ok();
    r.record_error(&refused());
    let report = r.check();
    assert_eq!(report.state, ReadyState::NotReady);
    assert_eq!(report.http_status(), 503);
}

#[test]
fn a_permanent_failure_is_not_ready_at_once() {
    let r = Readiness::builder()
        .grace(Duration::from_secs(3600))
        .build();
    r.record_ok();
    r.record_error(&bad_password());
    let report = r.check();
    assert_eq!(report.state, ReadyState::NotReady);
    assert_eq!(report.reason, Some("invalid_password"));
}

#[test]
fn recovery_is_degraded_for_a_while_then_ready() {
    let r = Readiness::builder()
        .degraded_for(Duration::from_secs(3600))
        .build();
    r.record_error(&refused());
    assert_eq!(r.check().state, ReadyState::Starting, "never succeeded yet");
    r.record_ok();
    let report = r.check();
    assert_eq!(report.state, ReadyState::Degraded);
    assert_eq!(report.reason, Some("refused"));
    assert!(report.failing_for.is_none());
    assert!(report.last_failure_age.is_some());

    let r = Readiness::builder().degraded_for(Duration::ZERO).build();
    r.record_error(&refused());
    r.record_ok();
    assert_eq!(r.check().state, ReadyState::Ready);
}

#[test]
fn a_startup_step_holds_starting() {
    let r = Readiness::new();
    r.record_ok();
    r.starting("migrations");
    let report = r.check();
    assert_eq!(report.state, ReadyState::Starting);
    assert_eq!(report.reason, Some("migrations"));
    r.started();
    assert_eq!(r.check().state, ReadyState::Ready);
}

#[test]
fn draining_wins_over_everything() {
    let r = Readiness::new();
    r.record_ok();
    assert!(!r.is_draining());
    r.drain();
    let report = r.check();
    assert_eq!(report.state, ReadyState::Draining);
    assert_eq!(report.reason, Some("draining"));
    assert_eq!(report.http_status(), 503);
    r.record_ok();
    assert_eq!(r.check().state, ReadyState::Draining, "for good");
}

#[tokio::test]
async fn draining_wakes_waiters() {
    let r = Readiness::new();
    let waiter = tokio::spawn({
        let r = r.clone();
        async move { r.draining().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    r.drain();
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken")
        .unwrap();
    // Already draining: resolves at once.
    tokio::time::timeout(Duration::from_millis(100), r.draining())
        .await
        .unwrap();
}

#[test]
fn the_json_body_holds_only_the_documented_fields() {
    let r = Readiness::builder()
        .grace(Duration::from_secs(3600))
        .build();
    r.record_ok();
    r.record_error(&refused());
    let json: serde_json::Value = serde_json::from_str(&r.check().to_json()).unwrap();
    let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "error",
            "failing_for_ms",
            "last_failure_age_ms",
            "last_success_age_ms",
            "ready",
            "reason",
            "state",
            "statement_mode"
        ]
    );
    assert_eq!(json["state"], "degraded");
    assert_eq!(json["ready"], true);
    assert_eq!(json["reason"], "refused");
}

#[test]
fn states_have_stable_names() {
    let names: Vec<_> = ReadyState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        ["starting", "ready", "degraded", "not_ready", "draining"]
    );
    assert_eq!(
        ReadyState::ALL.iter().filter(|s| s.is_ready()).count(),
        2,
        "ready and degraded pass"
    );
}
