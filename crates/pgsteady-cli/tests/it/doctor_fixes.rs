//! `pgsteady doctor` fixes (#18): one test per broken situation, each made for real with the
//! test kit, asserting the broken layer, the fix in the JSON (on the failing layer and on the
//! verdict) and on the text report's `fix:` line, and that no password appears anywhere.

use std::path::Path;
use std::time::{Duration, Instant};

use pgsteady_testkit::Cluster;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use serde_json::Value;

use crate::{TestCommand, url};

/// A doctor run, JSON and text.
struct Doctor {
    code: Option<i32>,
    json: Value,
    text: String,
    elapsed: Duration,
}

impl Doctor {
    fn broken(&self) -> &str {
        self.json["broken"]["layer"].as_str().unwrap_or("none")
    }

    /// The verdict's fix, checked to equal the failing layer's fix and the text's last
    /// `fix:` line.
    fn fix(&self) -> String {
        let fix = self.json["broken"]["fix"]
            .as_str()
            .unwrap_or_else(|| panic!("no fix on the verdict: {:#}", self.json))
            .to_owned();
        let layer = self.json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| h["layers"].as_array().unwrap())
            .find(|l| l["status"] == "fail")
            .unwrap();
        assert_eq!(layer["layer"], self.json["broken"]["layer"]);
        assert_eq!(layer["fix"].as_str(), Some(fix.as_str()), "{layer:#}");
        assert!(
            self.text.contains(&format!("\nfix: {fix}\n")),
            "text report lacks the fix line:\n{}",
            self.text
        );
        fix
    }

    fn assert(&self, code: i32, layer: &str, parts: &[&str]) -> String {
        assert_eq!(self.code, Some(code), "{:#}\n{}", self.json, self.text);
        assert_eq!(self.broken(), layer, "{:#}", self.json);
        let fix = self.fix();
        for part in parts {
            assert!(fix.contains(part), "fix lacks `{part}`:\n{fix}");
        }
        fix
    }
}

/// Runs `pgsteady doctor` twice (JSON, text) with `env` and in `dir`, checking both are free of
/// every secret in `secrets`.
async fn doctor_in(
    target: &str,
    env: &[(&str, &str)],
    dir: Option<&Path>,
    timeout: &str,
    secrets: &[&str],
) -> Doctor {
    // One HOME for both runs, so both name the same ~/.pgpass.
    let home = tempfile::tempdir().unwrap();
    let home = home.path().display().to_string();
    let run = |json: bool| {
        let mut args = vec!["doctor", target, "--timeout", timeout];
        if json {
            args.push("--json");
        }
        let mut cmd = TestCommand::new(&args).env("HOME", &home);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        if let Some(d) = dir {
            cmd = cmd.current_dir(d);
        }
        cmd.run()
    };
    let started = Instant::now();
    let done = run(true).await;
    let elapsed = started.elapsed();
    let text = run(false).await;
    for secret in secrets {
        done.assert_no_secret(secret);
        text.assert_no_secret(secret);
    }
    let json: Value =
        serde_json::from_str(done.stdout()).unwrap_or_else(|e| panic!("{e}: {done:#?}"));
    assert_eq!(done.code, text.code, "{}", text.stdout());
    Doctor {
        code: done.code,
        json,
        text: text.stdout().to_owned(),
        elapsed,
    }
}

async fn doctor(target: &str, secrets: &[&str]) -> Doctor {
    doctor_in(target, &[], None, "5s", secrets).await
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names` signed by `ca`, valid until `until` (y, m, d), as PEM
/// (certificate, key).
fn server_cert(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    until: (i32, u8, u8),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn with_query(cluster: &Cluster, query: &str) -> String {
    format!("{}?{query}", cluster.url())
}

#[tokio::test]
async fn tls_only_pg_hba_with_sslmode_disable_says_use_require() {
    let ca = make_ca("pgsteady doctor ca");
    let (cert, key) = server_cert(&ca, &["localhost", "127.0.0.1"], (2099, 1, 1));
    let cluster = Cluster::builder().tls(cert, key).start().await.unwrap();
    cluster
        .set_hba(&["hostssl all all 127.0.0.1/32 scram-sha-256"])
        .await
        .unwrap();
    let d = doctor(
        &with_query(&cluster, "sslmode=disable"),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &["only over TLS (pg_hba.conf `hostssl`): use sslmode=require"],
    );
    // Negative control: the same server with sslmode=require is healthy.
    let d = doctor(
        &with_query(&cluster, "sslmode=require"),
        &[cluster.password()],
    )
    .await;
    assert_eq!(d.code, Some(0), "{:#}", d.json);
    // The "no encryption" reject (a `hostnossl ... reject` line before the `hostssl` one):
    // the same fix.
    cluster
        .set_hba(&[
            "hostnossl all all 127.0.0.1/32 reject",
            "hostssl all all 127.0.0.1/32 scram-sha-256",
        ])
        .await
        .unwrap();
    let d = doctor(
        &with_query(&cluster, "sslmode=disable"),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &["only over TLS (pg_hba.conf `hostssl`): use sslmode=require"],
    );
}

#[tokio::test]
async fn server_without_tls_says_so_and_that_prefer_would_work() {
    let cluster = Cluster::start().await.unwrap();
    let d = doctor(
        &with_query(&cluster, "sslmode=require"),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &[
            "the server does not offer TLS (ssl = off); sslmode=prefer would connect, unencrypted",
            "asks for a password: scram-sha-256",
        ],
    );
    // When plain text is refused as well, prefer would not help.
    cluster
        .set_hba(&["hostssl all all 127.0.0.1/32 scram-sha-256"])
        .await
        .unwrap();
    let d = doctor(
        &with_query(&cluster, "sslmode=require"),
        &[cluster.password()],
    )
    .await;
    d.assert(3, "tls", &["sslmode=prefer would not help"]);
}

#[tokio::test]
async fn certificate_failures_name_the_ca_the_host_name_or_the_dates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("pgsteady doctor ca");
    let other = make_ca("some other ca");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("other.pem"), other.pem()).unwrap();
    let ca_file = dir.path().join("ca.pem").display().to_string();
    let other_file = dir.path().join("other.pem").display().to_string();

    // A wrong CA.
    let (cert, key) = server_cert(&ca, &["db.internal"], (2099, 1, 1));
    let cluster = Cluster::builder().tls(cert, key).start().await.unwrap();
    let d = doctor(
        &with_query(
            &cluster,
            &format!("sslmode=verify-full&sslrootcert={other_file}"),
        ),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &[
            &format!("not signed by a CA in sslrootcert={other_file} (holding CN=some other ca)"),
            "the CA `CN=pgsteady doctor ca`",
            "names db.internal",
            "valid Jan  1 00:00:00 2020 +00:00 to Jan  1 00:00:00 2099 +00:00",
        ],
    );
    // The right CA, the wrong host name.
    let d = doctor(
        &with_query(
            &cluster,
            &format!("sslmode=verify-full&sslrootcert={ca_file}"),
        ),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &[
            "valid for db.internal, not for `127.0.0.1`",
            "hostaddr=<ip>",
        ],
    );
    drop(cluster);

    // Expired.
    let (cert, key) = server_cert(&ca, &["127.0.0.1"], (2021, 6, 30));
    let cluster = Cluster::builder().tls(cert, key).start().await.unwrap();
    let d = doctor(
        &with_query(
            &cluster,
            &format!("sslmode=verify-full&sslrootcert={ca_file}"),
        ),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "tls",
        &["the server's certificate expired (Jun 30 00:00:00 2021 +00:00)"],
    );
}

#[tokio::test]
async fn missing_or_wrong_socket_directory_names_the_real_one() {
    let cluster = Cluster::start().await.unwrap();
    let sock = cluster.socket_dir();
    let want = format!(
        "the server's socket for port {p} is {}/.s.PGSQL.{p}: use host={}",
        sock.display(),
        sock.display(),
        p = cluster.port()
    );
    let target = |dir: &str| format!("host={dir} port={} user=app dbname=app", cluster.port());
    let d = doctor(&target("/nonexistent/pg-sockets"), &[]).await;
    d.assert(1, "socket", &[&want]);
    let empty = tempfile::tempdir().unwrap();
    let d = doctor(&target(&empty.path().display().to_string()), &[]).await;
    d.assert(1, "socket", &[&want]);
    // Negative control: the real directory works.
    let d = doctor(&target(&sock.display().to_string()), &[]).await;
    assert_eq!(d.code, Some(0), "{:#}", d.json);
}

#[tokio::test]
async fn socket_permission_denied_names_owner_and_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run doctor as `nobody`");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let cluster = Cluster::builder()
        .setting("unix_socket_permissions", "0770")
        .start()
        .await
        .unwrap();
    let target = format!(
        "host={} port={} user=app dbname=app",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().display().to_string();
    let run = |json: bool| {
        let mut args = vec!["doctor", target.as_str(), "--timeout", "5s"];
        if json {
            args.push("--json");
        }
        TestCommand::new(&args)
            .env("HOME", &home_path)
            .current_dir(Path::new("/"))
            .uid(nobody.uid.as_raw(), nobody.gid.as_raw())
            .run()
    };
    let done = run(true).await;
    let text = run(false).await;
    let d = Doctor {
        code: done.code,
        json: serde_json::from_str(done.stdout()).unwrap_or_else(|e| panic!("{e}: {done:#?}")),
        text: text.stdout().to_owned(),
        elapsed: Duration::ZERO,
    };
    // The socket is postgres's, mode 0770: connecting as nobody gets EACCES.
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    d.assert(
        1,
        "socket",
        &[
            &format!("{} is postgres:postgres mode 0770", socket.display()),
            "this process runs as `nobody`: run as `postgres` or a member of group `postgres`",
        ],
    );
}

#[tokio::test]
async fn wrong_and_missing_password() {
    let cluster = Cluster::start().await.unwrap();
    let d = doctor(
        &url(&cluster, cluster.user(), "Bad-Pw-987", cluster.dbname()),
        &["Bad-Pw-987", cluster.password()],
    )
    .await;
    d.assert(
        3,
        "auth",
        &[
            "the password from the connection string was refused for role `app`",
            "or role `app` does not exist",
            "the server asked for SCRAM-SHA-256",
        ],
    );
    // No password anywhere: say where doctor looked.
    let target = format!("postgresql://app@127.0.0.1:{}/app", cluster.port());
    let d = doctor(&target, &[cluster.password()]).await;
    let fix = d.assert(
        3,
        "auth",
        &["give the password for role `app`", "PGPASSWORD"],
    );
    assert!(
        fix.contains(&format!(
            "`127.0.0.1:{}:app:app:<password>`",
            cluster.port()
        )),
        "{fix}"
    );
    let detail = d.json["broken"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "none was found; looked in: the connection string: no password; PGPASSWORD: not set; "
        ) && detail.contains(".pgpass: does not exist"),
        "{detail}"
    );
    // Negative control: PGPASSWORD supplies it.
    let d = doctor_in(
        &target,
        &[("PGPASSWORD", cluster.password())],
        None,
        "5s",
        &[cluster.password()],
    )
    .await;
    assert_eq!(d.code, Some(0), "{:#}", d.json);
}

#[tokio::test]
async fn password_file_with_mode_0644_or_a_line_that_does_not_match() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    let path = file.display().to_string();
    let target = format!("postgresql://app@127.0.0.1:{}/app", cluster.port());
    let write = |line: String, mode: u32| {
        std::fs::write(&file, line).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    write(format!("*:*:*:app:{}\n", cluster.password()), 0o644);
    let d = doctor_in(
        &target,
        &[("PGPASSFILE", &path)],
        None,
        "5s",
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "auth",
        &[&format!("chmod 0600 {path}: it has mode 0644")],
    );

    write(
        format!(
            "localhost:{}:app:app:{}\n",
            cluster.port(),
            cluster.password()
        ),
        0o600,
    );
    let d = doctor_in(
        &target,
        &[("PGPASSFILE", &path)],
        None,
        "5s",
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "auth",
        &[&format!(
            "no line of {path} matches 127.0.0.1:{p}:app:app (line 1 `localhost:{p}:app:app`: \
             hostname `localhost` is not `127.0.0.1`)",
            p = cluster.port()
        )],
    );

    // Negative control: the matching line works.
    write(
        format!(
            "127.0.0.1:{}:app:app:{}\n",
            cluster.port(),
            cluster.password()
        ),
        0o600,
    );
    let d = doctor_in(
        &target,
        &[("PGPASSFILE", &path)],
        None,
        "5s",
        &[cluster.password()],
    )
    .await;
    assert_eq!(d.code, Some(0), "{:#}", d.json);
}

#[tokio::test]
async fn missing_role() {
    let cluster = Cluster::start().await.unwrap();
    // Over the socket, where pg_hba says trust: the server names the missing role.
    let target = format!(
        "host={} port={} user=ghost dbname=app",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let d = doctor(&target, &[]).await;
    d.assert(3, "auth", &["role `ghost` does not exist on this server"]);
}

#[tokio::test]
async fn pg_hba_reject_and_no_entry_name_what_the_server_saw() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .set_hba(&["host all app 127.0.0.1/32 reject"])
        .await
        .unwrap();
    let d = doctor(&cluster.url(), &[cluster.password()]).await;
    d.assert(
        3,
        "auth",
        &["a `reject` line in pg_hba.conf matches host 127.0.0.1, user app, database app, no encryption"],
    );
    cluster
        .set_hba(&["host all postgres 127.0.0.1/32 scram-sha-256"])
        .await
        .unwrap();
    let d = doctor(&cluster.url(), &[cluster.password()]).await;
    d.assert(
        3,
        "auth",
        &["no pg_hba.conf line matches what the server saw: host 127.0.0.1, user app, database app, no encryption; add one (e.g. `host app app 127.0.0.1/32 scram-sha-256`)"],
    );
}

#[tokio::test]
async fn peer_authentication_says_run_as_the_user_or_use_tcp() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .set_hba(&[
            "local all all peer",
            "host all all 127.0.0.1/32 scram-sha-256",
        ])
        .await
        .unwrap();
    let target = format!(
        "host={} port={} user=app dbname=app",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let d = doctor(&target, &[]).await;
    d.assert(
        3,
        "auth",
        &[
            &format!("peer authentication requires the operating-system user to match the role: this process runs as `{me}`, the role is `app`"),
            &format!("probed: on 127.0.0.1:{p} the server asks for a password, scram-sha-256", p = cluster.port()),
        ],
    );
}

#[tokio::test]
async fn missing_database_lists_the_ones_this_role_may_use() {
    let cluster = Cluster::start().await.unwrap();
    let d = doctor(
        &url(&cluster, cluster.user(), cluster.password(), "ap"),
        &[cluster.password()],
    )
    .await;
    d.assert(
        3,
        "database",
        &["database `ap` does not exist; role `app` may connect to: app, postgres (did you mean `app`?)"],
    );
}

#[tokio::test]
async fn slots_held_by_a_named_application() {
    // 5 slots, 3 reserved for superusers: billing-worker holds one, doctor takes the last.
    let cluster = Cluster::builder().max_connections(5).start().await.unwrap();
    let mut config = cluster.pg_config();
    config.application_name("billing-worker");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let d = doctor(&cluster.url(), &[cluster.password()]).await;
    d.assert(
        1,
        "headroom",
        &[
            "all 2 connection slots open to non-superusers are taken",
            "1 by user app application `billing-worker` from 127.0.0.1",
            "raise max_connections (now 5",
        ],
    );
    drop(client);
}

#[tokio::test]
async fn standby_names_the_primary_in_the_host_list_or_says_none_is() {
    let primary = Cluster::start().await.unwrap();
    let standby = primary.standby().start().await.unwrap();
    // The standby is a copy: the same role and password.
    let target = format!(
        "postgresql://app:{}@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-write",
        primary.password(),
        standby.port(),
        primary.port()
    );
    let d = doctor(&target, &[primary.password()]).await;
    // The list as a whole works; the standby's layer carries the fix.
    assert_eq!(d.code, Some(0), "{:#}", d.json);
    let layer = d.json["hosts"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "recovery")
        .unwrap()
        .clone();
    assert_eq!(layer["status"], "fail", "{layer:#}");
    let want = format!(
        "127.0.0.1:{p} in the host list is primary, read-write and satisfies \
         target_session_attrs=read-write: a connect skips 127.0.0.1:{s} and uses 127.0.0.1:{p}",
        p = primary.port(),
        s = standby.port()
    );
    assert!(layer["fix"].as_str().unwrap().contains(&want), "{layer:#}");
    assert!(d.text.contains(&format!("fix: {want}")), "{}", d.text);

    // The standby alone: no host is the primary.
    let alone = format!(
        "postgresql://app:{}@127.0.0.1:{}/app?target_session_attrs=read-write",
        primary.password(),
        standby.port()
    );
    let d = doctor(&alone, &[primary.password()]).await;
    d.assert(
        3,
        "recovery",
        &[&format!(
            "no host in the list satisfies target_session_attrs=read-write (127.0.0.1:{} is in \
             recovery (a standby): read-only): add the primary to the host list",
            standby.port()
        )],
    );

    // A primary made read-only (default_transaction_read_only): how to end that.
    primary
        .set("default_transaction_read_only", "on")
        .await
        .unwrap();
    let d = doctor(
        &format!("{}?target_session_attrs=read-write", primary.url()),
        &[primary.password()],
    )
    .await;
    d.assert(
        3,
        "recovery",
        &[
            "no host in the list satisfies target_session_attrs=read-write",
            "ALTER SYSTEM RESET default_transaction_read_only",
        ],
    );
}

#[tokio::test]
async fn stopped_server_explains_the_pattern_within_the_bound() {
    let cluster = Cluster::start().await.unwrap();
    cluster.pause().unwrap();
    let d = doctor_in(&cluster.url(), &[], None, "1s", &[cluster.password()]).await;
    cluster.resume().unwrap();
    d.assert(
        1,
        "startup",
        &[
            "doctor's client-side bound (1.0s, --timeout) was hit",
            "stopped (SIGSTOP",
            "a proxy or load balancer accepts connections and forwards them nowhere",
        ],
    );
    assert!(d.elapsed < Duration::from_secs(3), "{:?}", d.elapsed);
    // Without the TLS request the startup packet itself goes unanswered: the same fix.
    cluster.pause().unwrap();
    let d = doctor_in(
        &with_query(&cluster, "sslmode=disable"),
        &[],
        None,
        "1s",
        &[cluster.password()],
    )
    .await;
    cluster.resume().unwrap();
    d.assert(
        1,
        "startup",
        &["doctor's client-side bound (1.0s, --timeout) was hit"],
    );
    assert!(d.elapsed < Duration::from_secs(3), "{:?}", d.elapsed);
}

#[tokio::test]
async fn misspelled_host_offers_close_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = doctor_in(
        "postgresql://app:Pw-in-url-1@locahost:5432/app",
        &[],
        Some(dir.path()),
        "2s",
        &["Pw-in-url-1"],
    )
    .await;
    d.assert(
        1,
        "dns",
        &["did you mean `localhost` (127.0.0.1 in /etc/hosts)? use host=localhost"],
    );
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  postgres:\n    image: postgres:16\n    ports: [\"5433:5432\"]\n",
    )
    .unwrap();
    let d = doctor_in(
        "postgresql://app:Pw-in-url-1@postgress:5432/app",
        &[],
        Some(dir.path()),
        "2s",
        &["Pw-in-url-1"],
    )
    .await;
    d.assert(
        1,
        "dns",
        &[
            "did you mean `postgres`, a service in compose.yaml?",
            "host=127.0.0.1 port=5433 (published)",
        ],
    );
}

/// A SCRAM/MD5 mismatch: the role's password is stored as MD5, pg_hba.conf says
/// scram-sha-256, so even the right password fails (28P01 after a SASL request).
#[tokio::test]
async fn md5_stored_password_under_scram_pg_hba() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .admin()
        .await
        .unwrap()
        .batch_execute(&format!(
            "SET password_encryption = 'md5'; ALTER ROLE app PASSWORD '{}'",
            cluster.password()
        ))
        .await
        .unwrap();
    let d = doctor(&cluster.url(), &[cluster.password()]).await;
    d.assert(
        3,
        "auth",
        &[
            "the server asked for SCRAM-SHA-256: if role `app`'s password was stored as an MD5 hash",
            "or use md5 in pg_hba.conf",
        ],
    );
    // Negative control: as the fix says, md5 in pg_hba.conf takes the same password.
    cluster
        .set_hba(&["host all all 127.0.0.1/32 md5"])
        .await
        .unwrap();
    let d = doctor(&cluster.url(), &[cluster.password()]).await;
    assert_eq!(d.code, Some(0), "{:#}", d.json);
}
