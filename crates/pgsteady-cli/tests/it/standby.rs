//! `wait` and `check` honour `target_session_attrs` across hosts. Only a standby is
//! up (its primary stopped): `check` says not ready (exit 1) naming the standby, `wait` keeps
//! waiting and exits 0 soon after the standby is promoted.

use std::time::{Duration, SystemTime};

use pgsteady_testkit::{Cluster, StopMode};

use crate::TestCommand;

fn multi(cluster: &Cluster, ports: &[u16], extra: &str) -> String {
    format!("{}?{extra}", cluster.url_with_ports(ports))
}

#[tokio::test]
async fn wait_for_a_primary_exits_0_soon_after_the_standby_is_promoted() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    primary.stop(StopMode::Fast).await.unwrap();
    let target = multi(
        &primary,
        &[standby.port(), primary.port()],
        "target_session_attrs=read-write",
    );

    // One probe: not ready (1, not the permanent 3), and the message says why per host.
    let done = TestCommand::new(["check", &target, "--json"]).run().await;
    done.assert_exit_code(1)
        .assert_no_secret(primary.password());
    let failed = &done.events()[0];
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{}", standby.port()))
            && message.contains("standby (in recovery)"),
        "{failed}"
    );
    // Negative control: `any` takes the standby as it is.
    let any = multi(&primary, &[standby.port(), primary.port()], "");
    TestCommand::new(["check", &any])
        .run()
        .await
        .assert_exit_code(0);

    let running = TestCommand::new(["wait", &target, "--timeout", "30s", "--json"]).spawn();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    standby.promote().await.unwrap();
    let done = running.finish().await;
    let exited = SystemTime::now();
    done.assert_exit_code(0)
        .assert_no_secret(primary.password());
    let promoted = standby.promoted_at().unwrap();
    let late = exited.duration_since(promoted).unwrap_or_default();
    assert!(
        late < Duration::from_secs(1),
        "exited {late:?} after the promotion"
    );
    let events = done.events();
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "attempt_failed")
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .contains("standby (in recovery)")),
        "waited through the standby's refusals: {events:?}"
    );
    let ready = events.last().unwrap();
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(
        ready["host"],
        format!("127.0.0.1:{}", standby.port()),
        "{ready}"
    );
    TestCommand::new(["check", &target])
        .run()
        .await
        .assert_exit_code(0);
}

#[tokio::test]
async fn wait_without_a_primary_times_out_with_exit_1() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let target = multi(&primary, &[standby.port()], "target_session_attrs=primary");
    let done = TestCommand::new(["wait", &target, "--timeout", "2s", "--json"])
        .run()
        .await;
    done.assert_exit_code(1);
    let events = done.events();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "failed", "{last}");
    assert_eq!(last["reason"], "wrong_session_type", "{last}");
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "attempt_failed")
            .count()
            > 5,
        "kept trying: {events:?}"
    );
}

/// `doctor` reports per host whether it is a primary or a standby, its timeline and
/// a standby's replay lag, and which host a libpq client with this configuration would pick.
#[tokio::test]
async fn doctor_names_each_hosts_role_timeline_lag_and_the_host_libpq_would_pick() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    let order = [standby.port(), primary.port()];
    let pick = |attrs: &str| multi(&primary, &order, &format!("target_session_attrs={attrs}"));

    // `any` takes the first host, the standby; the host list is walked in order.
    let done = TestCommand::new(["doctor", &pick("any")]).run().await;
    done.assert_exit_code(0)
        .assert_no_secret(primary.password());
    let out = done.stdout();
    assert!(out.contains("primary, read-write; timeline 1"), "{out}");
    assert!(
        out.contains("in recovery (a standby): read-only; timeline 1; replay lag"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "a libpq client with this configuration would connect to 127.0.0.1:{}",
            standby.port()
        )),
        "{out}"
    );

    // `read-write` skips the standby (its layer fails) and picks the primary.
    let done = TestCommand::new(["doctor", &pick("read-write"), "--json"])
        .run()
        .await;
    done.assert_no_secret(primary.password());
    let report: serde_json::Value = serde_json::from_str(done.stdout().trim()).unwrap();
    assert_eq!(
        report["libpq_pick"],
        format!("127.0.0.1:{}", primary.port()),
        "{report:#}"
    );

    // With the primary fenced read-only, no host matches read-write.
    primary.fence().await.unwrap();
    let done = TestCommand::new(["doctor", &pick("read-write"), "--json"])
        .run()
        .await;
    let report: serde_json::Value = serde_json::from_str(done.stdout().trim()).unwrap();
    assert!(report["libpq_pick"].is_null(), "{report:#}");
}
