//! sslmode against real servers: one without TLS, one with a certificate for `localhost`
//! signed by a throwaway CA.

use std::path::{Path, PathBuf};

use pgsteady::{Config, Connector, ErrorKind, Reason};
use pgsteady_testkit::Cluster;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

#[tokio::test]
async fn without_tls_prefer_falls_back_and_require_fails_fast() {
    let cluster = Cluster::start().await.unwrap();
    for (mode, ok) in [
        ("disable", true),
        ("allow", true),
        ("prefer", true),
        ("require", false),
    ] {
        let url = format!("{}?sslmode={mode}", cluster.url());
        let result = Connector::new(Config::parse(&url).unwrap())
            .unwrap()
            .connect()
            .await;
        match (result, ok) {
            (Ok(c), true) => assert!(!c.tls, "{mode}"),
            (Err(e), false) => {
                assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
                assert_eq!(e.reason(), Some(Reason::Tls));
                assert_eq!(e.attempts(), 1, "fails fast");
                assert!(format!("{e:#}").contains("does not support TLS"), "{e:#}");
            }
            (r, _) => panic!("{mode}: {r:?}"),
        }
    }
}

/// A CA, and a server certificate for `localhost` signed by it.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("pgsteady test ca");
        let other_ca = make_ca("some other ca");
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca.pem());
        write("other-ca.pem", &other_ca.pem());
        write("server.crt", &server.pem());
        write("server.key", &server_key.serialize_pem());
        // PostgreSQL refuses a key readable by others; as root the server runs as `postgres`.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.path().join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            let user = std::env::var("PGSTEADY_PG_USER").unwrap_or_else(|_| "postgres".into());
            if let Ok(Some(u)) = nix::unistd::User::from_name(&user) {
                for f in ["server.crt", "server.key"] {
                    nix::unistd::chown(&dir.path().join(f), Some(u.uid), Some(u.gid)).unwrap();
                }
            }
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn url(cluster: &Cluster, host: &str, query: &str) -> String {
    format!(
        "postgresql://{}:{}@{host}:{}/{}?{query}",
        cluster.user(),
        cluster.password(),
        cluster.port(),
        cluster.dbname()
    )
}

async fn connect(url: &str) -> pgsteady::Result<pgsteady::Connected> {
    Connector::new(Config::parse(url)?)?.connect().await
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn verify_ca_checks_the_chain_and_verify_full_also_the_name() {
    let certs = Certs::new();
    let cluster = Cluster::builder()
        .setting("ssl", "on")
        .setting("ssl_cert_file", show(&certs.path("server.crt")))
        .setting("ssl_key_file", show(&certs.path("server.key")))
        .start()
        .await
        .unwrap();
    let ca = show(&certs.path("ca.pem"));
    let other = show(&certs.path("other-ca.pem"));

    // Encrypted without verification.
    for mode in ["prefer", "require"] {
        let c = connect(&url(&cluster, "127.0.0.1", &format!("sslmode={mode}")))
            .await
            .unwrap();
        assert!(c.tls, "{mode}");
        c.client.simple_query("SELECT 1").await.unwrap();
    }
    // allow: plain text first, and plain text works.
    let c = connect(&url(&cluster, "127.0.0.1", "sslmode=allow"))
        .await
        .unwrap();
    assert!(!c.tls);

    // verify-ca: the chain is checked, the name (127.0.0.1 vs localhost) is not.
    let c = connect(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(c.tls);
    // verify-full: the name is checked too.
    let err = connect(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(err.attempts(), 1, "a certificate error is permanent");
    let c = connect(&url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(c.tls);
    // The wrong CA fails both, and `require` with a root certificate verifies like verify-ca.
    for mode in ["verify-ca", "verify-full", "require"] {
        let err = connect(&url(
            &cluster,
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .await
        .unwrap_err();
        assert_eq!(err.reason(), Some(Reason::Tls), "{mode}: {err}");
        assert!(!err.is_transient(), "{mode}");
    }
}

/// A self-signed certificate for `localhost` (CA:TRUE, as `openssl req -x509` makes it) and
/// its key, written as `name.crt` / `name.key` in `certs`' directory, readable by the server.
fn self_signed(certs: &Certs, name: &str, expired: bool) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, keyfile) = (
        certs.path(&format!("{name}.crt")),
        certs.path(&format!("{name}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&keyfile, key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::geteuid().is_root() {
        let user = std::env::var("PGSTEADY_PG_USER").unwrap_or_else(|_| "postgres".into());
        if let Ok(Some(u)) = nix::unistd::User::from_name(&user) {
            for f in [&crt, &keyfile] {
                nix::unistd::chown(f, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
    }
}

/// Whether psql (libpq) connects with this URL and no other connection environment.
fn psql_connects(cluster: &Cluster, url: &str) -> bool {
    let mut cmd = std::process::Command::new(cluster.bin().tool("psql"));
    cmd.args(["-X", "-w", "-A", "-t", "-c", "select 1", url])
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run psql");
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1"
}

/// `sslrootcert=server.crt` with a self-signed server certificate: psql accepts it under
/// verify-ca and verify-full (for the name in it); pgsteady refused it (webpki's
/// CaUsedAsEndEntity). Another self-signed certificate, the wrong name, and an expired
/// self-signed certificate are refused by both.
#[tokio::test]
async fn a_self_signed_server_certificate_as_its_own_root_as_psql_takes_it() {
    let certs = Certs::new();
    self_signed(&certs, "selfsigned", false);
    self_signed(&certs, "stranger", false);
    self_signed(&certs, "expired", true);
    let start = |name: &str| {
        Cluster::builder()
            .setting("ssl", "on")
            .setting("ssl_cert_file", show(&certs.path(&format!("{name}.crt"))))
            .setting("ssl_key_file", show(&certs.path(&format!("{name}.key"))))
            .start()
    };
    let cluster = start("selfsigned").await.unwrap();
    let own = show(&certs.path("selfsigned.crt"));
    let stranger = show(&certs.path("stranger.crt"));
    let cases = [
        ("localhost", "verify-ca", &own, true),
        ("127.0.0.1", "verify-ca", &own, true),
        ("localhost", "verify-full", &own, true),
        ("localhost", "require", &own, true),
        ("127.0.0.1", "verify-full", &own, false),
        ("localhost", "verify-ca", &stranger, false),
        ("localhost", "verify-full", &stranger, false),
    ];
    for (host, mode, root, ok) in cases {
        let u = url(
            &cluster,
            host,
            &format!("sslmode={mode}&sslrootcert={root}"),
        );
        assert_eq!(psql_connects(&cluster, &u), ok, "psql {host} {mode} {root}");
        match connect(&u).await {
            Ok(c) => {
                assert!(ok, "{host} {mode} {root}: connected");
                assert!(c.tls);
                c.client.simple_query("SELECT 1").await.unwrap();
            }
            Err(e) => {
                assert!(!ok, "{host} {mode} {root}: {e:#}");
                assert_eq!(e.reason(), Some(Reason::Tls), "{e:#}");
                assert_eq!(e.attempts(), 1, "permanent");
            }
        }
    }
    drop(cluster);
    let cluster = start("expired").await.unwrap();
    let expired = show(&certs.path("expired.crt"));
    let u = url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={expired}"),
    );
    assert!(
        !psql_connects(&cluster, &u),
        "psql refuses an expired certificate"
    );
    let e = connect(&u).await.unwrap_err();
    assert_eq!(e.reason(), Some(Reason::Tls), "{e:#}");
    assert!(format!("{e:#}").to_lowercase().contains("expired"), "{e:#}");
}
