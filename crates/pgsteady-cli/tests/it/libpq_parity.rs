//! libpq parity where users hit it: psql and pgsteady given the same target and environment
//! must agree (both connect, or both refuse) on service files, self-signed roots, channel
//! binding and `require_auth`. psql here is the installed one (PostgreSQL 15's libpq).

use std::path::Path;

use pgsteady_testkit::Cluster;

use crate::TestCommand;

/// Whether psql connects and runs `select 1` with exactly `env` (plus `HOME`) and `target`.
pub fn psql_connects(cluster: &Cluster, home: &Path, env: &[(&str, &str)], target: &str) -> bool {
    let mut cmd = std::process::Command::new(cluster.bin().tool("psql"));
    cmd.args(["-X", "-w", "-A", "-t", "-c", "select 1"]);
    if !target.is_empty() {
        cmd.arg(target);
    }
    cmd.env("HOME", home)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run psql");
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1"
}

/// `check` with the same environment (an empty `target`: none given, as for psql).
async fn check(home: &Path, env: &[(&str, &str)], target: &str, secret: &str) -> crate::Finished {
    let args = ["check", "--timeout", "10s", target];
    let args = if target.is_empty() {
        &args[..3]
    } else {
        &args[..]
    };
    let mut cmd = TestCommand::new(args).env("HOME", home.to_str().unwrap());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let f = cmd.run().await;
    f.assert_no_secret(secret);
    f
}

/// A `pg_service.conf` entry: `service=` and `PGSERVICE` reach the server through the home
/// file and through `PGSYSCONFDIR`, as psql does; an unknown service is refused by both
/// (pgsteady: exit 2 naming it); pgsteady ignored `PGSERVICE` and refused `service=` as an
/// unknown option.
#[tokio::test]
async fn a_service_file_entry_as_psql_reads_it() {
    let cluster = Cluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sys = dir.path().join("sys");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&sys).unwrap();
    let entry = format!(
        "host=127.0.0.1\nport={}\nuser={}\npassword={}\ndbname={}\nsslmode=disable\n",
        cluster.port(),
        cluster.user(),
        cluster.password(),
        cluster.dbname()
    );
    std::fs::write(home.join(".pg_service.conf"), format!("[homesvc]\n{entry}")).unwrap();
    std::fs::write(
        sys.join("pg_service.conf"),
        format!("# system\n[syssvc]\n{entry}"),
    )
    .unwrap();
    let sys_s = sys.to_str().unwrap();
    let secret = cluster.password();
    // (environment, target, whether both connect)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool);
    let cases: &[Case] = &[
        (&[("PGSYSCONFDIR", sys_s)], "service=homesvc", true),
        (&[("PGSYSCONFDIR", sys_s)], "service=syssvc", true),
        (
            &[("PGSYSCONFDIR", sys_s), ("PGSERVICE", "syssvc")],
            "",
            true,
        ),
        (
            &[("PGSYSCONFDIR", sys_s)],
            "postgresql:///?service=homesvc",
            true,
        ),
        (&[("PGSYSCONFDIR", sys_s)], "service=nosuchsvc", false),
        (
            &[("PGSYSCONFDIR", sys_s), ("PGSERVICE", "nosuchsvc")],
            "",
            false,
        ),
    ];
    for (env, target, connects) in cases {
        assert_eq!(
            psql_connects(&cluster, &home, env, target),
            *connects,
            "psql {env:?} {target}"
        );
        let f = check(&home, env, target, secret).await;
        if *connects {
            f.assert_exit_code(0);
        } else {
            f.assert_exit_code(2);
            assert!(
                f.stderr
                    .contains("definition of service \"nosuchsvc\" not found"),
                "{f:#?}"
            );
        }
    }
}

/// A TLS cluster (self-signed for `localhost`) with an `md5user` whose password is stored as
/// MD5.
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
            "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'Md5-pw-9';",
        )
        .await
        .unwrap();
    cluster
}

fn target(cluster: &Cluster, user: &str, password: &str, query: &str) -> String {
    format!(
        "postgresql://{user}:{password}@127.0.0.1:{}/{}?{query}",
        cluster.port(),
        cluster.dbname()
    )
}

/// `channel_binding=require`: psql (libpq 15) and pgsteady agree, connecting over TLS with
/// SCRAM (SCRAM-SHA-256-PLUS), refusing without TLS, with an MD5 user, and under trust;
/// pgsteady refused every `require` with "not supported" (exit 2).
#[tokio::test]
async fn channel_binding_require_as_psql() {
    let cluster = tls_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (user, pw) = (cluster.user().to_owned(), cluster.password().to_owned());
    let check_both = |t: String, connects: bool, why: &'static str| {
        let cluster = &cluster;
        async move {
            assert_eq!(
                psql_connects(cluster, home, &[], &t),
                connects,
                "psql: {why}"
            );
            let f = check(home, &[], &t, "Md5-pw-9").await;
            if connects {
                f.assert_exit_code(0);
            } else {
                f.assert_exit_code(3);
                assert!(
                    f.stderr.contains("channel_binding=require"),
                    "{why}: {f:#?}"
                );
            }
        }
    };
    let require = "channel_binding=require";
    check_both(
        target(&cluster, &user, &pw, &format!("sslmode=require&{require}")),
        true,
        "tls + scram",
    )
    .await;
    check_both(
        target(&cluster, &user, &pw, &format!("sslmode=disable&{require}")),
        false,
        "no tls",
    )
    .await;
    // Negative control: without `require` both connect in plain text.
    check_both(
        target(
            &cluster,
            &user,
            &pw,
            "sslmode=disable&channel_binding=prefer",
        ),
        true,
        "prefer, no tls",
    )
    .await;
    cluster
        .set_hba(&[
            "host all md5user 127.0.0.1/32 md5",
            "host all all 127.0.0.1/32 trust",
        ])
        .await
        .unwrap();
    check_both(
        target(
            &cluster,
            "md5user",
            "Md5-pw-9",
            &format!("sslmode=require&{require}"),
        ),
        false,
        "md5",
    )
    .await;
    check_both(
        target(&cluster, &user, &pw, &format!("sslmode=require&{require}")),
        false,
        "trust",
    )
    .await;
    check_both(
        target(&cluster, "md5user", "Md5-pw-9", "sslmode=require"),
        true,
        "md5 without require",
    )
    .await;
}

/// `require_auth` (libpq 16; psql here is 15, so pgsteady alone): a method the server may not
/// use is permanent (3) and named with the setting; a bad list is a usage error (2).
#[tokio::test]
async fn require_auth_refusals_exit_3_naming_the_setting() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .set_hba(&["host all all 127.0.0.1/32 password"])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (user, pw) = (cluster.user().to_owned(), cluster.password().to_owned());
    let t = |q: &str| target(&cluster, &user, &pw, q);
    let f = check(dir.path(), &[], &t("require_auth=scram-sha-256"), &pw).await;
    f.assert_exit_code(3);
    assert!(f.stderr.contains("require_auth=scram-sha-256"), "{f:#?}");
    assert!(f.stderr.contains("\"password\""), "{f:#?}");
    // From PGREQUIREAUTH too.
    let f = check(dir.path(), &[("PGREQUIREAUTH", "!password")], &t(""), &pw).await;
    f.assert_exit_code(3);
    assert!(f.stderr.contains("require_auth=!password"), "{f:#?}");
    // Negative control: allowed, it connects.
    check(dir.path(), &[], &t("require_auth=password"), &pw)
        .await
        .assert_exit_code(0);
    // A bad list: 2, the setting and the bad method named.
    let f = check(dir.path(), &[], &t("require_auth=scram"), &pw).await;
    f.assert_exit_code(2);
    assert!(f.stderr.contains("require_auth"), "{f:#?}");
    assert!(f.stderr.contains("\"scram\""), "{f:#?}");
}
