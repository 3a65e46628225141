//! `require_auth` and `channel_binding` against a real PostgreSQL (one TLS cluster whose
//! `pg_hba.conf` is switched between methods) and a fake server asking for a cleartext
//! password: what the server may ask for is the client's to decide, before any credential is
//! sent.

use pgsteady::{Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::Cluster;
use pgsteady_testkit::fake::{Behavior, FakeServer};

/// A TLS cluster (self-signed certificate for `localhost`, ECDSA P-256 / SHA-256) with an
/// `md5user` whose password is stored as MD5, so an `md5` line really asks for MD5.
async fn tls_cluster() -> Cluster {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cluster = Cluster::builder()
        .tls(cert.pem(), key.serialize_pem())
        .start()
        .await
        .unwrap();
    cluster
        .admin()
        .await
        .unwrap()
        .batch_execute(
            "SET password_encryption = 'md5'; \
             CREATE ROLE md5user LOGIN PASSWORD 'Md5-pw-9';",
        )
        .await
        .unwrap();
    cluster
}

fn url(cluster: &Cluster, user: &str, password: &str, query: &str) -> String {
    format!(
        "postgresql://{user}:{password}@127.0.0.1:{}/{}?{query}",
        cluster.port(),
        cluster.dbname()
    )
}

fn main_user(cluster: &Cluster, query: &str) -> String {
    url(cluster, cluster.user(), cluster.password(), query)
}

async fn connect(url: &str) -> pgsteady::Result<pgsteady::Connected> {
    Connector::new(Config::parse(url)?)?.connect().await
}

/// A refusal by the client's own requirement: permanent, one attempt, the setting and
/// `want` named, no password shown.
fn assert_refused(result: pgsteady::Result<pgsteady::Connected>, want: &[&str], what: &str) {
    let err = match result {
        Ok(_) => panic!("{what}: connected, want a refusal"),
        Err(e) => e,
    };
    assert_eq!(
        err.reason(),
        Some(Reason::AuthRequirement),
        "{what}: {err:#}"
    );
    assert_eq!(err.kind(), ErrorKind::Auth, "{what}");
    assert_eq!(err.attempts(), 1, "{what}: not retried");
    assert!(!err.is_transient(), "{what}");
    let shown = format!("{err:#} {err:?}");
    for w in want {
        assert!(shown.contains(w), "{what}: {w:?} in {shown}");
    }
    assert!(!shown.contains("Md5-pw-9"), "{shown}");
}

#[tokio::test]
async fn channel_binding_require_binds_scram_to_our_tls_and_refuses_the_rest() {
    let cluster = tls_cluster().await;
    // TLS + SCRAM: PostgreSQL offers SCRAM-SHA-256-PLUS; `require` succeeding is the proof
    // that the exchange was bound (the server checks the client's tls-server-end-point hash
    // against its own certificate's, and refuses a mismatch).
    let c = connect(&main_user(
        &cluster,
        "sslmode=require&channel_binding=require",
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(c.tls);
    c.client.simple_query("SELECT 1").await.unwrap();
    // prefer (the default) binds too, and disable does not need to.
    for cb in ["prefer", "disable"] {
        let c = connect(&main_user(
            &cluster,
            &format!("sslmode=require&channel_binding={cb}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("{cb}: {e:#}"));
        assert!(c.tls, "{cb}");
    }
    // Negative controls: no TLS, an MD5 user, trust.
    assert_refused(
        connect(&main_user(
            &cluster,
            "sslmode=disable&channel_binding=require",
        ))
        .await,
        &["channel_binding=require", "not encrypted"],
        "plain text",
    );
    cluster
        .set_hba(&[
            "host all md5user 127.0.0.1/32 md5",
            "host all all 127.0.0.1/32 scram-sha-256",
        ])
        .await
        .unwrap();
    assert_refused(
        connect(&url(
            &cluster,
            "md5user",
            "Md5-pw-9",
            "sslmode=require&channel_binding=require",
        ))
        .await,
        &[
            "channel_binding=require",
            "\"md5\"",
            "no credential was sent",
        ],
        "md5",
    );
    // The same user without the requirement logs in: the refusal above was the client's.
    connect(&url(&cluster, "md5user", "Md5-pw-9", "sslmode=require"))
        .await
        .unwrap();
    cluster
        .set_hba(&["host all all 127.0.0.1/32 trust"])
        .await
        .unwrap();
    assert_refused(
        connect(&main_user(
            &cluster,
            "sslmode=require&channel_binding=require",
        ))
        .await,
        &["channel_binding=require", "without channel binding"],
        "trust",
    );
}

#[tokio::test]
async fn require_auth_refuses_what_the_server_may_not_ask_for() {
    let cluster = tls_cluster().await;
    let scram = "host all all 127.0.0.1/32 scram-sha-256";

    // The default rules ask for SCRAM.
    for (require_auth, ok) in [
        ("scram-sha-256", true),
        ("!password", true),
        ("md5,scram-sha-256", true),
        ("!scram-sha-256", false),
        ("md5", false),
        ("none", false),
    ] {
        let result = connect(&main_user(
            &cluster,
            &format!("sslmode=disable&require_auth={require_auth}"),
        ))
        .await;
        if ok {
            result.unwrap_or_else(|e| panic!("{require_auth}: {e:#}"));
        } else {
            assert_refused(
                result,
                &[&format!("require_auth={require_auth}"), "\"scram-sha-256\""],
                require_auth,
            );
        }
    }

    // A cleartext password: refused unless allowed.
    cluster
        .set_hba(&["host all all 127.0.0.1/32 password"])
        .await
        .unwrap();
    assert_refused(
        connect(&main_user(
            &cluster,
            "sslmode=disable&require_auth=scram-sha-256",
        ))
        .await,
        &[
            "require_auth=scram-sha-256",
            "cleartext password (\"password\")",
            "no credential was sent",
        ],
        "password",
    );
    assert_refused(
        connect(&main_user(
            &cluster,
            "sslmode=disable&require_auth=!password",
        ))
        .await,
        &["require_auth=!password", "(\"password\")"],
        "!password",
    );
    // Negative control: allowed, the same server lets the client in.
    connect(&main_user(
        &cluster,
        "sslmode=disable&require_auth=password",
    ))
    .await
    .unwrap();

    // MD5 refused when only SCRAM is allowed.
    cluster
        .set_hba(&["host all md5user 127.0.0.1/32 md5", scram])
        .await
        .unwrap();
    assert_refused(
        connect(&url(
            &cluster,
            "md5user",
            "Md5-pw-9",
            "sslmode=disable&require_auth=scram-sha-256",
        ))
        .await,
        &[
            "require_auth=scram-sha-256",
            "MD5-hashed password (\"md5\")",
        ],
        "md5",
    );
    connect(&url(
        &cluster,
        "md5user",
        "Md5-pw-9",
        "sslmode=disable&require_auth=md5",
    ))
    .await
    .unwrap();

    // trust: only with `none` allowed.
    cluster
        .set_hba(&["host all all 127.0.0.1/32 trust"])
        .await
        .unwrap();
    for require_auth in ["none", "scram-sha-256,none", "!password"] {
        connect(&main_user(
            &cluster,
            &format!("sslmode=disable&require_auth={require_auth}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("{require_auth}: {e:#}"));
    }
    for require_auth in ["scram-sha-256", "!none"] {
        assert_refused(
            connect(&main_user(
                &cluster,
                &format!("sslmode=disable&require_auth={require_auth}"),
            ))
            .await,
            &[
                &format!("require_auth={require_auth}"),
                "without authenticating",
            ],
            require_auth,
        );
    }
}

/// An impostor asking for the password in clear text: with `require_auth=scram-sha-256` the
/// password never leaves the client.
#[tokio::test]
async fn a_cleartext_request_gets_no_password() {
    let server = FakeServer::start(Behavior::PasswordRequest).await.unwrap();
    let target = format!(
        "postgresql://app:Cleartext-pw-7@127.0.0.1:{}/db?sslmode=disable",
        server.port()
    );
    assert_refused(
        connect(&format!("{target}&require_auth=scram-sha-256")).await,
        &["require_auth=scram-sha-256", "(\"password\")"],
        "fake",
    );
    assert_eq!(server.passwords(), 0, "no password was sent");
    // Negative control: without the requirement the password is sent (and refused, 28P01).
    let err = connect(&target).await.unwrap_err();
    assert_eq!(err.reason(), Some(Reason::InvalidPassword), "{err:#}");
    assert_eq!(server.passwords(), 1);
    assert!(!format!("{err:#} {err:?}").contains("Cleartext-pw-7"));
}
