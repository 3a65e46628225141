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
