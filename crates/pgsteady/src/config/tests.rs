use super::*;
use crate::ErrorKind;
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> impl Env + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn tcp(host: &str, port: u16) -> HostSpec {
    HostSpec {
        host: Host::Tcp(host.into()),
        hostaddr: None,
        port,
    }
}

#[test]
fn uri_and_keyvalue_agree() {
    let a = Config::parse(
        "postgresql://app:pw@db1:5432,db2:5433/appdb?connect_timeout=5&target_session_attrs=primary&sslmode=require&application_name=x",
    )
    .unwrap();
    let b = Config::parse(
        "host=db1,db2 port=5432,5433 user=app password=pw dbname=appdb connect_timeout=5 target_session_attrs=primary sslmode=require application_name=x",
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.hosts, vec![tcp("db1", 5432), tcp("db2", 5433)]);
    assert_eq!(a.user, "app");
    assert_eq!(a.dbname, "appdb");
    assert_eq!(a.password.as_ref().map(Password::expose), Some("pw"));
    assert_eq!(a.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(a.target_session_attrs, TargetSessionAttrs::Primary);
    assert_eq!(a.tls.mode, SslMode::Require);
}

/// `statement_cache`: auto by default, `on` / `off` in a URI or key=value string, shown
/// again by `Display`, anything else refused naming the value.
#[test]
fn statement_cache_key() {
    let c = Config::parse("postgresql://app@db/app").unwrap();
    assert_eq!(c.statement_cache, StatementCache::Auto);
    assert!(!c.to_string().contains("statement_cache"));
    let on = Config::parse("postgresql://app@db/app?statement_cache=on").unwrap();
    assert_eq!(on.statement_cache, StatementCache::On);
    assert!(on.to_string().contains("&statement_cache=on"), "{on}");
    let auto = Config::parse("host=db statement_cache=auto").unwrap();
    assert_eq!(auto.statement_cache, StatementCache::Auto);
    let c = Config::parse("postgresql://app@db/app?statement_cache=off").unwrap();
    assert_eq!(c.statement_cache, StatementCache::Off);
    assert!(c.to_string().contains("&statement_cache=off"), "{c}");
    assert_eq!(
        Config::parse(&c.to_string()).unwrap().statement_cache,
        StatementCache::Off
    );
    let kv = Config::parse("host=db user=app statement_cache=off").unwrap();
    assert_eq!(kv.statement_cache, StatementCache::Off);
    let err = Config::parse("postgresql://app@db/app?statement_cache=maybe").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid statement_cache (expected one of: auto, on, off)"),
        "{err}"
    );
}

#[test]
fn defaults() {
    let c = Config::parse("host=h user=u").unwrap();
    assert_eq!(c.hosts, vec![tcp("h", DEFAULT_PORT)]);
    assert_eq!(c.dbname, "u", "dbname defaults to the user name");
    assert_eq!(c.tls.mode, SslMode::Prefer);
    assert_eq!(c.target_session_attrs, TargetSessionAttrs::Any);
    assert!(c.keepalives);
    assert_eq!(c.keepalives_idle, DEFAULT_KEEPALIVES_IDLE);
    assert_eq!(c.keepalives_interval, DEFAULT_KEEPALIVES_INTERVAL);
    assert_eq!(c.keepalives_count, DEFAULT_KEEPALIVES_COUNT);
    assert_eq!(c.tcp_user_timeout, Some(DEFAULT_TCP_USER_TIMEOUT));
    assert_eq!(c.connect_timeout, None);
    // No host at all: a Unix socket directory.
    let c = Config::parse("user=u").unwrap();
    assert!(matches!(c.hosts[0].host, Host::Unix(_)));
}

/// libpq documents these value rules (34.1.2 Parameter Key Words).
#[test]
fn libpq_value_rules() {
    type Check = fn(&Config) -> bool;
    let rows: &[(&str, Check)] = &[
        ("connect_timeout=0", |c| c.connect_timeout.is_none()),
        ("connect_timeout=-3", |c| c.connect_timeout.is_none()),
        ("connect_timeout=1", |c| {
            c.connect_timeout == Some(Duration::from_secs(2))
        }),
        ("connect_timeout=' 7 '", |c| {
            c.connect_timeout == Some(Duration::from_secs(7))
        }),
        ("tcp_user_timeout=1500", |c| {
            c.tcp_user_timeout == Some(Duration::from_millis(1500))
        }),
        ("tcp_user_timeout=0", |c| c.tcp_user_timeout.is_none()),
        ("keepalives=0", |c| !c.keepalives),
        ("keepalives_count=9", |c| c.keepalives_count == 9),
        ("keepalives_retries=4", |c| c.keepalives_count == 4),
        ("keepalives_idle=60 keepalives_interval=7", |c| {
            c.keepalives_idle == Duration::from_secs(60)
                && c.keepalives_interval == Duration::from_secs(7)
        }),
        ("target_session_attrs=prefer-standby", |c| {
            c.target_session_attrs == TargetSessionAttrs::PreferStandby
        }),
        ("target_session_attrs=read-only", |c| {
            c.target_session_attrs == TargetSessionAttrs::ReadOnly
        }),
        ("sslmode=verify-ca sslrootcert=/ca.pem", |c| {
            c.tls.mode == SslMode::VerifyCa
                && c.tls.root_cert == Some(RootCert::File("/ca.pem".into()))
        }),
        ("sslmode=verify-full sslrootcert=system", |c| {
            c.tls.mode == SslMode::VerifyFull && c.tls.root_cert == Some(RootCert::System)
        }),
        ("sslmode=allow", |c| c.tls.mode == SslMode::Allow),
        ("host=h port=6000", |c| c.hosts == vec![tcp("h", 6000)]),
        // One port applies to every host.
        ("host=a,b port=6000", |c| {
            c.hosts == vec![tcp("a", 6000), tcp("b", 6000)]
        }),
        // Empty entries take the default port.
        ("host=a,b,c port=1,,3", |c| {
            c.hosts.iter().map(|h| h.port).collect::<Vec<_>>() == [1, DEFAULT_PORT, 3]
        }),
        ("host=/var/run/postgresql", |c| {
            c.hosts[0].host == Host::Unix("/var/run/postgresql".into())
        }),
        ("hostaddr=127.0.0.1", |c| {
            c.hosts[0].hostaddr == Some("127.0.0.1".parse().unwrap())
                && c.hosts[0].host == Host::Tcp("127.0.0.1".into())
        }),
        ("host=db.example hostaddr=10.0.0.1", |c| {
            c.hosts[0].host == Host::Tcp("db.example".into())
                && c.hosts[0].hostaddr == Some("10.0.0.1".parse().unwrap())
        }),
        ("application_name=a fallback_application_name=b", |c| {
            c.application_name.as_deref() == Some("a")
        }),
        ("fallback_application_name=b", |c| {
            c.application_name.as_deref() == Some("b")
        }),
        ("options='-c statement_timeout=5s'", |c| {
            c.options.as_deref() == Some("-c statement_timeout=5s")
        }),
        ("load_balance_hosts=random", |c| c.load_balance_hosts),
        (
            "client_encoding=UTF8 channel_binding=prefer gssencmode=disable",
            |c| c.channel_binding == ChannelBinding::Prefer && c.require_auth.is_any(),
        ),
        ("channel_binding=require", |c| {
            c.channel_binding == ChannelBinding::Require
                && c.to_string().contains("channel_binding=require")
        }),
        ("channel_binding=disable", |c| {
            c.channel_binding == ChannelBinding::Disable
        }),
        ("require_auth=scram-sha-256,none", |c| {
            c.require_auth.allows(AuthMethod::ScramSha256)
                && c.require_auth.allows(AuthMethod::None)
                && !c.require_auth.allows(AuthMethod::Md5)
                && c.to_string().contains("require_auth=scram-sha-256,none")
        }),
        ("require_auth=", |c| c.require_auth.is_any()),
    ];
    for (s, check) in rows {
        let c = Config::parse(&format!("user=u {s}")).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(check(&c), "{s}: {c:?}");
    }
}

#[test]
fn bad_values_name_the_bad_part() {
    // Values are never shown (a mistyped string may have put a password there);
    // the key and what was expected are.
    let rows = [
        (
            "connect_timeout=10s",
            "invalid connect_timeout: expected whole seconds",
        ),
        ("connect_timeout=abc", "invalid connect_timeout"),
        (
            "tcp_user_timeout=-1",
            "invalid tcp_user_timeout: expected milliseconds",
        ),
        ("keepalives_count=x", "invalid keepalives_count"),
        ("port=99999", "invalid port for host 1 of 1"),
        ("port=0", "invalid port"),
        (
            "host=a,b port=1,2,3",
            "could not match 3 port numbers to 2 hosts",
        ),
        (
            "host=a,b hostaddr=1.2.3.4",
            "could not match 2 host names to 1 hostaddr values",
        ),
        (
            "hostaddr=db.example",
            "invalid hostaddr (entry 1): expected a numeric IP address",
        ),
        (
            "sslmode=verify",
            "invalid sslmode (expected one of: disable, allow",
        ),
        (
            "target_session_attrs=master",
            "invalid target_session_attrs",
        ),
        (
            "require_auth=md5,!password",
            "invalid require_auth: method \"!password\" mixes negated",
        ),
        (
            "require_auth=kerberos",
            "invalid require_auth: unknown method \"kerberos\"",
        ),
        ("channel_binding=xyzzy", "invalid channel_binding"),
        (
            "sslcert=/a.pem",
            "sslcert and sslkey must be given together",
        ),
        ("client_encoding=LATIN1", "unsupported client_encoding"),
        ("bogus=1", "unknown connection option at character 8"),
        ("load_balance_hosts=sometimes", "invalid load_balance_hosts"),
    ];
    for (s, want) in rows {
        let err = Config::parse(&format!("user=u {s}")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{s}");
        assert!(err.to_string().contains(want), "{s}: {err}");
        let value = s.rsplit('=').next().unwrap();
        // A mistyped require_auth method is shown: a method-shaped word, never free text
        // (config/auth.rs shows only those).
        if value.len() > 1
            && ![
                "require", "/a.pem", "1.2.3.4", "1,2,3", "verify", "kerberos",
            ]
            .contains(&value)
        {
            assert!(!err.to_string().contains(value), "{s}: {err}");
        }
    }
    let err = Config::parse("mysql://h/db").unwrap_err();
    assert!(
        err.to_string().contains("invalid URL scheme `mysql`"),
        "{err}"
    );
    let err = Config::parse("S3cret://h/db").unwrap_err();
    assert!(!err.to_string().contains("S3cret"), "{err}");
}

/// A startup packet over PostgreSQL's limit is a usage error found before
/// connecting, naming field sizes, not contents.
#[test]
fn oversized_startup_packet_is_refused_before_connecting() {
    let long = "x".repeat(100_000);
    for key in ["user", "dbname", "options", "application_name"] {
        let err = Config::parse(&format!("host=h user=u {key}={long}")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{key}");
        let text = err.to_string();
        assert!(text.contains("over PostgreSQL's limit of 10000"), "{text}");
        assert!(text.contains("100000 bytes"), "{text}");
        assert!(!text.contains("xxxxxxxx"), "{key}");
    }
    // Just under the limit still parses (negative control).
    let fits = "x".repeat(9_000);
    Config::parse(&format!("host=h user=u options={fits}")).unwrap();
}

/// libpq precedence: the string beats the environment beats defaults, keyword by keyword.
#[test]
fn environment_precedence() {
    let e = env(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6543"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "disable"),
        ("PGCONNECT_TIMEOUT", "9"),
        ("PGAPPNAME", "envapp"),
        ("PGOPTIONS", "-c search_path=x"),
        ("PGTARGETSESSIONATTRS", "read-write"),
        ("PGSSLROOTCERT", "/env/ca.pem"),
        ("PGREQUIREAUTH", "!password"),
        ("PGCHANNELBINDING", "require"),
    ]);
    // Nothing given: everything from the environment.
    let c = Config::parse_with_env("", &e).unwrap();
    assert!(!c.require_auth.allows(AuthMethod::Password));
    assert!(c.require_auth.allows(AuthMethod::ScramSha256));
    assert_eq!(c.channel_binding, ChannelBinding::Require);
    // The string beats PGREQUIREAUTH; a bad PGREQUIREAUTH is a configuration error.
    let c = Config::parse_with_env("require_auth=md5", &e).unwrap();
    assert!(c.require_auth.allows(AuthMethod::Md5));
    assert!(!c.require_auth.allows(AuthMethod::ScramSha256));
    let err = Config::parse_with_env("", &env(&[("PGREQUIREAUTH", "scram")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("require_auth"), "{err}");
    assert_eq!(c.hosts, vec![tcp("envhost", 6543)]);
    assert_eq!(c.user, "envuser");
    assert_eq!(c.password.as_ref().unwrap().expose(), "envpw");
    assert_eq!(c.dbname, "envdb");
    assert_eq!(c.tls.mode, SslMode::Disable);
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(9)));
    assert_eq!(c.application_name.as_deref(), Some("envapp"));
    assert_eq!(c.options.as_deref(), Some("-c search_path=x"));
    assert_eq!(c.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert_eq!(c.tls.root_cert, Some(RootCert::File("/env/ca.pem".into())));

    // The string wins where it speaks; the environment fills the rest (PGPORT applies to a
    // host given in the string, as in libpq).
    let c = Config::parse_with_env("postgresql://u:pw@strhost/strdb?sslmode=require", &e).unwrap();
    assert_eq!(c.hosts, vec![tcp("strhost", 6543)]);
    assert_eq!(c.user, "u");
    assert_eq!(c.password.as_ref().unwrap().expose(), "pw");
    assert_eq!(c.dbname, "strdb");
    assert_eq!(c.tls.mode, SslMode::Require);
    assert_eq!(c.application_name.as_deref(), Some("envapp"));

    // An empty variable counts as unset.
    let c = Config::parse_with_env("user=u", &env(&[("PGPORT", "")])).unwrap();
    assert_eq!(c.hosts[0].port, DEFAULT_PORT);

    // PGHOSTADDR is not combined with a host from the string.
    let e = env(&[("PGHOSTADDR", "10.9.9.9")]);
    let c = Config::parse_with_env("host=strhost user=u", &e).unwrap();
    assert_eq!(c.hosts[0].hostaddr, None);
    let c = Config::parse_with_env("user=u", &e).unwrap();
    assert_eq!(c.hosts[0].hostaddr, Some("10.9.9.9".parse().unwrap()));

    // A bad environment value is reported like a bad string value.
    let err = Config::parse_with_env("user=u", &env(&[("PGCONNECT_TIMEOUT", "soon")])).unwrap_err();
    assert!(
        err.to_string().contains("invalid connect_timeout") && !err.to_string().contains("soon"),
        "{err}"
    );
}

#[test]
fn database_url_is_the_target_when_none_is_given() {
    let e = env(&[
        ("DATABASE_URL", "postgres://dbu@dburlhost:7000/dburldb"),
        ("PGHOST", "envhost"),
        ("PGAPPNAME", "envapp"),
    ]);
    let c = Config::resolve_with_env(None, &e).unwrap();
    assert_eq!(c.hosts, vec![tcp("dburlhost", 7000)]);
    assert_eq!(c.dbname, "dburldb");
    assert_eq!(c.application_name.as_deref(), Some("envapp"));
    // An explicit target beats DATABASE_URL entirely.
    let c = Config::resolve_with_env(Some("host=t user=u"), &e).unwrap();
    assert_eq!(c.hosts, vec![tcp("t", DEFAULT_PORT)]);
    // A broken DATABASE_URL says so.
    let e = env(&[("DATABASE_URL", "postgres://h:bad/db")]);
    let err = Config::resolve_with_env(None, &e).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("DATABASE_URL: invalid URL: invalid port in host entry 1"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn passfile_precedence_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let pgpass = dir.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        "h1:5432:db:u:from-home-h1\nlocalhost:5432:*:u:from-home-socket\n",
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, "*:*:*:*:from-other\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();

    let e = env(&[("HOME", &home)]);
    let c = Config::parse_with_env("host=h1,h2,/tmp user=u dbname=db", &e).unwrap();
    assert_eq!(c.password_for(&c.hosts[0]), Some("from-home-h1"));
    assert_eq!(c.password_for(&c.hosts[1]), None);
    // A Unix socket is looked up as `localhost`.
    assert_eq!(c.password_for(&c.hosts[2]), Some("from-home-socket"));

    // PGPASSFILE beats ~/.pgpass; passfile= beats PGPASSFILE.
    let e2 = env(&[("HOME", &home), ("PGPASSFILE", other.to_str().unwrap())]);
    let c = Config::parse_with_env("host=h1 user=u dbname=db", &e2).unwrap();
    assert_eq!(c.password_for(&c.hosts[0]), Some("from-other"));
    let s = format!("host=h1 user=u dbname=db passfile={}", pgpass.display());
    let c = Config::parse_with_env(&s, &e2).unwrap();
    assert_eq!(c.password_for(&c.hosts[0]), Some("from-home-h1"));

    // A password given explicitly (string or PGPASSWORD) beats the file.
    let e3 = env(&[("HOME", &home), ("PGPASSWORD", "from-env")]);
    let c = Config::parse_with_env("host=h1 user=u dbname=db", &e3).unwrap();
    assert_eq!(c.password_for(&c.hosts[0]), Some("from-env"));

    // Group-readable: ignored.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = Config::parse_with_env("host=h1 user=u dbname=db", &e).unwrap();
    assert!(c.passfile.is_none());
    assert_eq!(c.password_for(&c.hosts[0]), None);
}

#[test]
fn display_and_debug_never_show_the_password() {
    let secret = "Sup3r-s3cret";
    let inputs = [
        format!("postgresql://app:{secret}@db:5432/app"),
        format!("postgresql://app@db/app?password={secret}"),
        format!("host=db user=app password={secret}"),
        format!("host=db user=app password='{secret}'"),
    ];
    for input in &inputs {
        let c = Config::parse(input).unwrap();
        assert_eq!(c.password.as_ref().unwrap().expose(), secret);
        let shown = format!("{c} {c:?} {:?} {:?}", c.password, c.hosts);
        assert!(!shown.contains(secret), "{shown}");
        assert!(c.to_string().contains(":***@"), "{c}");
    }
    let e = env(&[("PGPASSWORD", secret)]);
    let c = Config::parse_with_env("host=db user=app", &e).unwrap();
    assert!(!format!("{c} {c:?}").contains(secret));
    // Errors from a bad string never echo the password either.
    for bad in [
        format!("postgresql://app:{secret}@db:bad/app"),
        format!("host=db password='{secret}"),
        format!("host=db password={secret} port=x"),
    ] {
        let err = Config::parse(&bad).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret), "{err}");
    }
}

#[test]
fn display_round_trips() {
    let c = Config::parse(
        "postgresql://app@db1:5432,[::1]:5433,%2Ftmp%2Fpg:5434/my%20db?sslmode=verify-full&target_session_attrs=primary&connect_timeout=4&application_name=a%26b",
    )
    .unwrap();
    let shown = c.to_string();
    assert_eq!(
        shown,
        "postgresql://app@db1:5432,[::1]:5433,%2Ftmp%2Fpg:5434/my%20db?sslmode=verify-full&connect_timeout=4&target_session_attrs=primary&application_name=a%26b"
    );
    assert_eq!(Config::parse(&shown).unwrap(), c);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Generated inputs per property: 3 properties x 10,000 cases (4 parser calls per case at
    /// most) run without a panic, in about 7 s in a debug build on 2 cores.
    const CASES: u32 = 10_000;

    /// The password the redaction property inserts; alphanumeric, so no parser splits it.
    const PW: &str = "Zq9pWs3cr3tX";

    fn uri_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("postgresql://".to_owned()),
            Just("postgres://".to_owned()),
            Just("@".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("?".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just(",".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("%".to_owned()),
            Just("%2F".to_owned()),
            Just("%00".to_owned()),
            Just("%ff".to_owned()),
            Just("port=".to_owned()),
            Just("host=".to_owned()),
            Just("hostaddr=".to_owned()),
            Just("connect_timeout=".to_owned()),
            Just("sslmode=".to_owned()),
            Just("'".to_owned()),
            Just("\\".to_owned()),
            Just(" ".to_owned()),
            "[0-9]{1,6}",
            "[a-z]{1,8}",
            "\\PC{0,4}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        // XorShift: ChaCha (the default) dominates the run time in a debug build.
        #![proptest_config(ProptestConfig {
            cases: CASES,
            rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
            // Fixed: the same cases on every run and in CI; a failure reproduces.
            rng_seed: proptest::test_runner::RngSeed::Fixed(19),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_string_never_panics(s in "\\PC*") {
            let _ = Config::parse(&s);
        }

        #[test]
        fn uri_like_strings_never_panic(s in uri_like()) {
            let _ = Config::parse(&s);
            let _ = Config::parse(&format!("postgresql://{s}"));
        }

        #[test]
        fn parsed_configs_display_without_panicking_and_reparse(s in uri_like()) {
            if let Ok(c) = Config::parse(&s) {
                let shown = c.to_string();
                // The redacted form drops the password; everything else survives.
                let again = Config::parse(&shown.replace(":***@", "@")).unwrap();
                prop_assert_eq!(&again.hosts, &c.hosts);
                prop_assert_eq!(&again.user, &c.user);
                prop_assert_eq!(&again.dbname, &c.dbname);
            }
        }
    }

    proptest! {
        // Three parses per case: 4,000 cases keep it near the others' run time.
        #![proptest_config(ProptestConfig {
            cases: 4_000,
            rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
            rng_seed: proptest::test_runner::RngSeed::Fixed(19),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A known password inserted anywhere in a random target never appears in
        /// any parse error, nor in the redacted display of what parsed, unless it landed in a
        /// field that is not secret (a host or a database name is printed by design).
        #[test]
        fn a_password_inserted_anywhere_never_leaks(
            s in uri_like(),
            at in any::<proptest::sample::Index>(),
            scheme in prop_oneof![Just(""), Just("postgresql://"), Just("postgresql://u:"), Just("host=h password=")],
        ) {
            let s = format!("{scheme}{s}");
            let cut = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect::<Vec<_>>();
            let cut = cut[at.index(cut.len())];
            let target = format!("{}{PW}{}", &s[..cut], &s[cut..]);
            let env_url = |name: &str| (name == "DATABASE_URL").then(|| target.clone());
            for result in [
                Config::parse(&target),
                Config::parse_with_env(&target, &|_: &str| None),
                Config::resolve_with_env(None, &env_url),
            ] {
                match result {
                    Err(e) => {
                        let shown = format!("{e} {e:?}");
                        prop_assert!(!shown.contains(PW), "{target:?}: {shown}");
                    }
                    Ok(c) => {
                        let public = c.hosts.iter().map(|h| h.to_string()).chain([
                            c.user.clone(),
                            c.dbname.clone(),
                            c.options.clone().unwrap_or_default(),
                            c.application_name.clone().unwrap_or_default(),
                        ]);
                        let printed_by_design = public.into_iter().any(|v| v.contains(PW));
                        if !printed_by_design {
                            let shown = format!("{c} {c:?}");
                            prop_assert!(!shown.contains(PW), "{target:?}: {shown}");
                        }
                    }
                }
            }
        }

        /// Sanitized text never holds a control character and respects its cap.
        #[test]
        fn sanitized_text_is_printable_and_capped(s in "\\PC{0,64}|[\\x00-\\x1f\\x7f-\\u{9f}\\u{202e}a-z]{0,200}", cap in 1usize..100) {
            let out = crate::text::sanitize_to(&s, cap);
            prop_assert!(!out.chars().any(|c| c.is_control() || c == '\u{202e}'), "{out:?}");
            let kept = out.split("… (").next().unwrap_or("");
            prop_assert!(kept.chars().count() <= cap * 8, "{out:?}");
        }

    }
}

/// An environment whose one variable is set to bytes that are not UTF-8, as a process's can
/// be (`std::env::var` then says `NotUnicode`).
struct NotUnicodeEnv(&'static str);

impl Env for NotUnicodeEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
    fn var_checked(&self, name: &str) -> Result<Option<String>, Error> {
        if name == self.0 {
            Err(super::env::not_unicode(name))
        } else {
            Ok(None)
        }
    }
}

#[test]
fn a_variable_that_is_not_utf8_is_an_error_naming_it() {
    // Every variable resolve reads with no service named: each libpq one, DATABASE_URL,
    // PGSERVICE, and HOME (the default passfile and root certificate).
    let vars =
        super::env::VARS
            .iter()
            .map(|(var, _)| *var)
            .chain(["DATABASE_URL", "PGSERVICE", "HOME"]);
    for var in vars {
        let err = Config::resolve_with_env(None, &NotUnicodeEnv(var)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{var}");
        assert!(err.to_string().contains(var), "{err}");
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }
    // Not consulted: an explicit host overrides PGHOST, as in libpq.
    Config::resolve_with_env(Some("host=db user=u"), &NotUnicodeEnv("PGHOST")).unwrap();
    // Negative control: the plain `var` of the same environment would have read "unset".
    assert!(Config::resolve_with_env(None, &|_: &str| None).is_ok());
}

#[test]
fn keepalive_values_the_kernel_refuses_are_configuration_errors() {
    for bad in [
        "keepalives_interval=99999999999",
        "keepalives_idle=32768",
        "keepalives_count=128",
    ] {
        let err = Config::parse(&format!("host=h {bad}")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        assert!(err.to_string().contains("at most"), "{err}");
    }
    let c = Config::parse(
        "host=h keepalives_idle=32767 keepalives_interval=32767 keepalives_count=127",
    )
    .unwrap();
    assert_eq!(c.keepalives_interval, Duration::from_secs(32_767));
    assert_eq!(c.keepalives_count, 127);
}

/// pg_service.conf as libpq reads it: `service=` or `PGSERVICE`; `PGSERVICEFILE` or
/// `~/.pg_service.conf` first, then `$PGSYSCONFDIR/pg_service.conf`; the string beats the
/// section, the section beats `PG*`; an unknown service or a bad line is an error naming it.
#[test]
fn service_file_precedence_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sys = dir.path().join("sys");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(
        home.join(".pg_service.conf"),
        "[app]\nhost=homehost\nport=6000\ndbname=homedb\n",
    )
    .unwrap();
    std::fs::write(
        sys.join("pg_service.conf"),
        "[app]\nhost=syshost\n[sysonly]\nhost=sysonlyhost\nuser=sysuser\n\
         [nested]\nservice=app\n[typo]\nhost = x\n[alias]\nkeepalives_retries=2\n",
    )
    .unwrap();
    let explicit = dir.path().join("explicit.conf");
    std::fs::write(&explicit, "[app]\nhost=explicithost\n").unwrap();
    let (home_s, sys_s) = (home.to_str().unwrap(), sys.to_str().unwrap());
    let e = env(&[
        ("HOME", home_s),
        ("PGSYSCONFDIR", sys_s),
        ("PGPORT", "7000"),
        ("PGUSER", "envuser"),
    ]);

    // The home file's section wins over the system file's; the section beats PGPORT; PGUSER
    // fills what the section left unset.
    let c = Config::parse_with_env("service=app", &e).unwrap();
    assert_eq!(c.hosts, vec![tcp("homehost", 6000)]);
    assert_eq!((c.dbname.as_str(), c.user.as_str()), ("homedb", "envuser"));
    // The string beats the section.
    let c = Config::parse_with_env("postgresql://u@strhost/?service=app", &e).unwrap();
    assert_eq!(c.hosts, vec![tcp("strhost", 6000)]);
    // PGSERVICE names it when the string does not; a section only in the system file is found.
    let e2 = env(&[
        ("HOME", home_s),
        ("PGSYSCONFDIR", sys_s),
        ("PGSERVICE", "sysonly"),
    ]);
    let c = Config::parse_with_env("", &e2).unwrap();
    assert_eq!(c.hosts, vec![tcp("sysonlyhost", DEFAULT_PORT)]);
    assert_eq!(c.user, "sysuser");
    // PGSERVICEFILE replaces ~/.pg_service.conf.
    let e3 = env(&[
        ("HOME", home_s),
        ("PGSYSCONFDIR", sys_s),
        ("PGSERVICEFILE", explicit.to_str().unwrap()),
    ]);
    let c = Config::parse_with_env("service=app", &e3).unwrap();
    assert_eq!(c.hosts, vec![tcp("explicithost", DEFAULT_PORT)]);

    let rows: Vec<(String, &dyn Env, String)> = vec![
        (
            "service=nosuch".into(),
            &e,
            format!(
                "definition of service \"nosuch\" not found (looked in {}, {})",
                home.join(".pg_service.conf").display(),
                sys.join("pg_service.conf").display()
            ),
        ),
        (
            "service=nested".into(),
            &e,
            "nested service specifications not supported in service file".into(),
        ),
        (
            "service=typo".into(),
            &e,
            "syntax error in service file".into(),
        ),
        // Keywords are exact in a service file, as in libpq.
        ("service=alias".into(), &e, "line 11".into()),
    ];
    for (s, env, want) in &rows {
        let err = Config::parse_with_env(s, *env).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{s}");
        assert!(err.to_string().contains(want.as_str()), "{s}: {err}");
    }
    // A PGSERVICEFILE that does not exist is an error, not a fallback.
    let missing = dir.path().join("missing.conf");
    let e4 = env(&[
        ("HOME", home_s),
        ("PGSYSCONFDIR", sys_s),
        ("PGSERVICEFILE", missing.to_str().unwrap()),
    ]);
    let err = Config::parse_with_env("service=app", &e4).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("service file \"{}\" not found", missing.display())),
        "{err}"
    );
    // Without an environment the keyword is refused, not ignored.
    let err = Config::parse("service=app").unwrap_err();
    assert!(
        err.to_string().contains("service= needs the environment"),
        "{err}"
    );
    // No service named: no file is read (a broken one does not matter).
    std::fs::write(sys.join("pg_service.conf"), "[app]\nbroken\n").unwrap();
    Config::parse_with_env("host=h user=u", &e).unwrap();
}

#[test]
fn fuzz_the_uri_parser_never_panics() {
    use proptest::prelude::*;
    let uri = prop_oneof![
        3 => ("(postgres|postgresql)://", "[a-z0-9@:/?=&%,.\\[\\]_-]{0,60}")
            .prop_map(|(s, r)| format!("{s}{r}")),
        1 => ("postgresql://", "(%[0-9a-fA-F]{0,2}|[^%]){0,20}").prop_map(|(s, r)| format!("{s}{r}")),
    ];
    crate::fuzzing::fuzz("uri", uri, |s| {
        let _ = super::uri::parse(&s);
        let _ = super::uri::decode(&s);
        Ok(())
    });
}

#[test]
fn fuzz_the_key_value_parser_never_panics() {
    use proptest::prelude::*;
    let kv = prop_oneof![
        3 => "([a-z_]{1,8} ?= ?('([^'\\\\]|\\\\.){0,8}'?|[^ ]{0,8}) ?){0,6}",
        1 => "[a-z= '\\\\]{0,40}",
        1 => any::<String>(),
    ];
    crate::fuzzing::fuzz("key=value", kv, |s| {
        let _ = super::keyvalue::parse(&s);
        Ok(())
    });
}

#[test]
fn fuzz_the_passfile_parser_never_panics() {
    use proptest::prelude::*;
    let file = prop_oneof![
        3 => "([a-z0-9*:\\\\#. ]{0,24}\r?\n){0,6}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..128),
    ];
    let field = "[a-z0-9*:\\\\]{0,6}";
    crate::fuzzing::fuzz(
        "passfile",
        (file, field, field, field, field),
        |(bytes, host, port, db, user)| {
            let f = PassFile::parse_bytes(std::path::Path::new("/fuzz/.pgpass"), &bytes);
            let _ = f.lookup(&host, &port, &db, &user);
            let _ = f.explain(&host, &port, &db, &user);
            Ok(())
        },
    );
}

#[test]
fn fuzz_the_service_file_parser_never_panics() {
    use proptest::prelude::*;
    let file = prop_oneof![
        3 => "((\\[[a-z]{0,3}\\]?|[a-z]{0,6}=?[a-z =]{0,6}|#.{0,4}| *)\r?\n){0,8}"
            .prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..128),
    ];
    crate::fuzzing::fuzz(
        "service file",
        (file, "[a-z\\]\\[]{0,3}"),
        |(bytes, service)| {
            let mut entry = |_: usize, _: &str, _: &[u8]| Ok(());
            let _ = super::service::parse(&bytes, &service, &mut entry);
            // And taking every line, as the keyword checks do.
            let mut strict = |line: usize, key: &str, value: &[u8]| {
                super::keyvalue::parse(&format!("{key}={}", String::from_utf8_lossy(value)))
                    .map(|_| ())
                    .map_err(|e| Error::config(format!("line {line}: {e}")))
            };
            let _ = super::service::parse(&bytes, &service, &mut strict);
            Ok(())
        },
    );
}
