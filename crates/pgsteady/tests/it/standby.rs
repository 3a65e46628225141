//! Host selection against a real primary and its streaming standby, hosts listed
//! standby first: where each `target_session_attrs` lands, `prefer-standby` without a
//! standby, `load_balance_hosts=random`, no extra round trip on PostgreSQL 14+, and session
//! attributes that change under a live connection (fence, promotion).

use std::collections::HashMap;
use std::time::Duration;

use pgsteady::{Config, Connected, Connector, Reason, SessionState, TargetSessionAttrs};
use pgsteady_testkit::{Cluster, StopMode};

/// A connector for the hosts `ports` (in that order) of `cluster`'s user and database.
fn hosts(cluster: &Cluster, ports: &[u16], extra: &str) -> Connector {
    let url = format!(
        "{}?connect_timeout=5&{extra}",
        cluster.url_with_ports(ports)
    );
    Connector::new(Config::parse(&url).unwrap()).unwrap()
}

/// (inet_server_port(), pg_is_in_recovery()) of a session.
async fn where_am_i(c: &Connected) -> (u16, bool) {
    let row = c
        .client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .unwrap();
    (row.get::<_, i32>(0) as u16, row.get(1))
}

/// Where `n` connects landed: how many per (port, in recovery), 8 connects at a time.
async fn landings(connector: &Connector, n: u32) -> HashMap<(u16, bool), u32> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let connector = connector.clone();
        let share = n / 8 + u32::from(worker < n % 8);
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..share {
                let c = connector.connect_once().await.unwrap();
                let at = where_am_i(&c).await;
                assert_eq!(c.host.port, at.0);
                seen.push(at);
            }
            seen
        });
    }
    let mut counts = HashMap::new();
    while let Some(seen) = tasks.join_next().await {
        for at in seen.unwrap() {
            *counts.entry(at).or_default() += 1;
        }
    }
    counts
}

async fn pair() -> (Cluster, Cluster) {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    (primary, standby)
}

#[tokio::test]
async fn each_target_lands_on_its_server_200_of_200() {
    let (primary, standby) = pair().await;
    let order = [standby.port(), primary.port()];
    let cases = [
        ("read-write", primary.port(), false),
        ("primary", primary.port(), false),
        ("read-only", standby.port(), true),
        ("standby", standby.port(), true),
        // Negative control: `any` takes the first host, the standby; the others are not
        // landing where they do by accident of the order.
        ("any", standby.port(), true),
    ];
    for (attrs, port, in_recovery) in cases {
        let connector = hosts(&primary, &order, &format!("target_session_attrs={attrs}"));
        let landed = landings(&connector, 200).await;
        assert_eq!(
            landed,
            HashMap::from([((port, in_recovery), 200)]),
            "{attrs}"
        );
    }
}

#[tokio::test]
async fn prefer_standby_takes_the_standby_and_the_primary_when_the_standby_is_down() {
    let (primary, standby) = pair().await;
    let connector = hosts(
        &primary,
        &[primary.port(), standby.port()],
        "target_session_attrs=prefer-standby",
    );
    let c = connector.connect_once().await.unwrap();
    assert_eq!(where_am_i(&c).await, (standby.port(), true));
    drop(c);
    standby.stop(StopMode::Fast).await.unwrap();
    for _ in 0..20 {
        let c = connector.connect_once().await.unwrap();
        assert_eq!(where_am_i(&c).await, (primary.port(), false));
    }
    // `standby` alone has nowhere to go: the error names each host.
    let err = hosts(
        &primary,
        &[primary.port(), standby.port()],
        "target_session_attrs=standby",
    )
    .connect_once()
    .await
    .unwrap_err();
    let reasons: Vec<Reason> = err.hosts().iter().map(|h| h.reason).collect();
    assert_eq!(
        reasons,
        [Reason::WrongSessionType, Reason::Refused],
        "{err}"
    );
    assert!(err.to_string().contains("read-write primary"), "{err}");
}

#[tokio::test]
async fn load_balance_hosts_random_spreads_1000_connects() {
    let (primary, standby) = pair().await;
    let order = [standby.port(), primary.port()];
    let connector = hosts(&primary, &order, "load_balance_hosts=random");
    let landed = landings(&connector, 1000).await;
    assert_eq!(landed.values().sum::<u32>(), 1000);
    for at in [(standby.port(), true), (primary.port(), false)] {
        let n = landed.get(&at).copied().unwrap_or(0);
        assert!((400..=600).contains(&n), "{landed:?}");
    }
    eprintln!("load_balance_hosts=random over 1000 connects: {landed:?}");
    // Negative control: without it, every connect takes the first host.
    let connector = hosts(&primary, &order, "");
    for _ in 0..50 {
        let c = connector.connect_once().await.unwrap();
        assert_eq!(where_am_i(&c).await.0, standby.port());
    }
    // And with read-write, random order still ends on the only primary.
    let connector = hosts(
        &primary,
        &order,
        "load_balance_hosts=random&target_session_attrs=read-write",
    );
    for _ in 0..50 {
        let c = connector.connect_once().await.unwrap();
        assert_eq!(where_am_i(&c).await, (primary.port(), false));
    }
}

/// Statements logged after `offset` bytes of the server log (`log_statement = all` logs every
/// simple query as "statement:" and every extended-protocol execute as "execute").
fn statements_since(cluster: &Cluster, offset: usize) -> Vec<String> {
    cluster.log()[offset..]
        .lines()
        .filter(|l| l.contains("LOG:  statement: ") || l.contains("LOG:  execute "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn on_postgresql_14_plus_the_check_sends_no_query() {
    let (primary, standby) = pair().await;
    for c in [&primary, &standby] {
        c.set("log_statement", "all").await.unwrap();
    }
    let order = [standby.port(), primary.port()];
    let marks = (primary.log().len(), standby.log().len());
    for attrs in [
        "read-write",
        "primary",
        "read-only",
        "standby",
        "prefer-standby",
    ] {
        let c = hosts(&primary, &order, &format!("target_session_attrs={attrs}"))
            .connect_once()
            .await
            .unwrap();
        c.client
            .simple_query(&format!("SELECT 'marker {attrs}'"))
            .await
            .unwrap();
        // The monitor read the state from the startup ParameterStatus messages.
        assert!(c.monitor.session_state().is_known(), "{attrs}");
    }
    let logged: Vec<String> = statements_since(&primary, marks.0)
        .into_iter()
        .chain(statements_since(&standby, marks.1))
        .collect();
    assert_eq!(logged.len(), 5, "{logged:#?}");
    assert!(logged.iter().all(|l| l.contains("marker")), "{logged:#?}");

    // Negative control: tokio-postgres' own read-write check (`SHOW transaction_read_only`)
    // is seen by the same count.
    let mark = primary.log().len();
    let mut config = primary.pg_config();
    config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    drop(client);
    let logged = statements_since(&primary, mark);
    assert!(
        logged.iter().any(|l| l.contains("transaction_read_only")),
        "{logged:#?}"
    );
}

async fn changed(c: &Connected, seen: SessionState) -> SessionState {
    tokio::time::timeout(
        Duration::from_secs(5),
        c.monitor.session_state_changed(seen),
    )
    .await
    .expect("the monitor reports the change")
}

#[tokio::test]
async fn a_live_connection_learns_of_a_fence_at_its_next_statement() {
    let primary = Cluster::start().await.unwrap();
    let c = hosts(
        &primary,
        &[primary.port()],
        "target_session_attrs=read-write",
    )
    .connect_once()
    .await
    .unwrap();
    let before = c.monitor.session_state();
    assert_eq!(before, SessionState::new(false, false));
    assert_eq!(before.satisfies(TargetSessionAttrs::ReadWrite), Some(true));
    primary.fence().await.unwrap();
    c.client.simple_query("SELECT 1").await.unwrap();
    let fenced = changed(&c, before).await;
    assert_eq!(fenced, SessionState::new(false, true));
    assert_eq!(fenced.satisfies(TargetSessionAttrs::ReadWrite), Some(false));
    assert_eq!(fenced.satisfies(TargetSessionAttrs::Primary), Some(true));
    assert_eq!(c.monitor.session_state(), fenced);
    primary.unfence().await.unwrap();
    c.client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(changed(&c, fenced).await, before);
}

#[tokio::test]
async fn a_live_connection_to_a_standby_learns_of_its_promotion() {
    let (primary, standby) = pair().await;
    let c = hosts(&primary, &[standby.port()], "target_session_attrs=standby")
        .connect_once()
        .await
        .unwrap();
    let before = c.monitor.session_state();
    assert_eq!(before, SessionState::new(true, false));
    primary.stop(StopMode::Fast).await.unwrap();
    standby.promote().await.unwrap();
    // Idle, the session has not been told (the server reports at its next ReadyForQuery).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.monitor.session_state(), before);
    c.client.simple_query("SELECT 1").await.unwrap();
    let promoted = changed(&c, before).await;
    assert_eq!(promoted, SessionState::new(false, false));
    assert_eq!(promoted.satisfies(TargetSessionAttrs::Standby), Some(false));
    assert_eq!(
        promoted.satisfies(TargetSessionAttrs::ReadWrite),
        Some(true)
    );
}

/// A proxy in front of `upstream` that drops the server's `in_hot_standby` and
/// `default_transaction_read_only` ParameterStatus messages, as a server older than 14 (or a
/// proxy that does not forward them) would. Hand-written: no proxy crate parses the protocol
/// this little. The client must not ask for TLS (`sslmode=disable`): every byte from the
/// server is then a message (type, length, body).
async fn hide_session_parameters(upstream: u16) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
                });
                loop {
                    let mut head = [0u8; 5];
                    if server_rd.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    // Messages on this test's connections are small; cap what we buffer.
                    let mut body = vec![0u8; len.saturating_sub(4).min(1 << 20)];
                    if server_rd.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let hidden = head[0] == b'S'
                        && (body.starts_with(b"in_hot_standby\0")
                            || body.starts_with(b"default_transaction_read_only\0"));
                    if !hidden
                        && (client_wr.write_all(&head).await.is_err()
                            || client_wr.write_all(&body).await.is_err())
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, task)
}

/// Servers that do not report their state: one query per connect decides, as libpq does.
#[tokio::test]
async fn without_reported_state_one_query_decides() {
    let (primary, standby) = pair().await;
    for c in [&primary, &standby] {
        c.set("log_statement", "all").await.unwrap();
    }
    let (to_standby, p1) = hide_session_parameters(standby.port()).await;
    let (to_primary, p2) = hide_session_parameters(primary.port()).await;
    let marks = (primary.log().len(), standby.log().len());
    for (attrs, port, in_recovery) in [
        ("read-write", primary.port(), false),
        ("standby", standby.port(), true),
    ] {
        for _ in 0..10 {
            let c = hosts(
                &primary,
                &[to_standby, to_primary],
                &format!("sslmode=disable&target_session_attrs={attrs}"),
            )
            .connect_once()
            .await
            .unwrap();
            assert_eq!(c.monitor.session_state(), SessionState::default());
            assert_eq!(where_am_i(&c).await, (port, in_recovery), "{attrs}");
        }
    }
    // read-write: the standby is asked and rejected, then the primary asked (2 per connect);
    // standby: the standby is asked (1 per connect).
    let checks = |log: Vec<String>| {
        log.iter()
            .filter(|l| l.contains("pg_is_in_recovery()::text"))
            .count()
    };
    assert_eq!(checks(statements_since(&primary, marks.0)), 10);
    assert_eq!(checks(statements_since(&standby, marks.1)), 20);
    p1.abort();
    p2.abort();
}
