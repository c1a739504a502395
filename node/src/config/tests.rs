use super::*;

#[test]
fn go_durations_parse_as_etcd_takes_them() {
    assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_go_duration("10").is_err());
    assert!(parse_go_duration("0s").is_err());
    assert!(parse_go_duration("ten minutes").is_err());
}

fn flags(args: &[&str]) -> Result<MemberConfig, String> {
    let mut argv = vec!["keel"];
    argv.extend_from_slice(args);
    Flags::try_parse_from(argv).map_err(|e| e.to_string())?.validate()
}

#[test]
fn defaults_are_a_single_member_on_loopback() {
    let config = flags(&[]).expect("defaults are valid");
    assert_eq!(config.name, "default");
    assert_eq!(config.data_dir, PathBuf::from("default.keel"));
    assert_eq!(config.listen_client, vec![SocketAddr::from(([127, 0, 0, 1], 2379))]);
    assert_eq!(config.initial_cluster, vec![("default".to_string(), vec!["http://127.0.0.1:2380".to_string()])]);
}

#[test]
fn three_member_cluster() {
    let config = flags(&[
        "--name",
        "b",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-cluster",
        "a=http://127.0.0.1:2380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380",
        "--peer-secret-file",
        "/etc/keel/peer-secret",
    ])
    .expect("valid");
    assert_eq!(config.initial_cluster.len(), 3);
    assert_eq!(config.peer_secret, PeerSecretSource::File("/etc/keel/peer-secret".into()));
}

#[test]
fn a_cluster_of_several_members_needs_a_peer_secret() {
    let err = flags(&["--initial-cluster", "default=http://127.0.0.1:2380,b=http://127.0.0.1:22380"])
        .expect_err("no secret for two members");
    assert!(err.contains("--peer-secret-file is required"), "{err}");
    assert_eq!(flags(&[]).expect("one member").peer_secret, PeerSecretSource::DataDir);
}

#[test]
fn bad_flags_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--name", "x"], "couldn't find local name \"x\""),
        (&["--listen-client-urls", "nope"], "--listen-client-urls"),
        (&["--initial-cluster", "default=http://127.0.0.1:9"], "missing from --initial-advertise-peer-urls"),
        (&["--initial-cluster-state", "maybe"], "maybe"),
        (&["--election-timeout", "100"], "--election-timeout"),
        (&["--listen-peer-urls", "ftp://127.0.0.1:1"], "scheme must be http or https"),
        (&["--heartbeat-interval", "0"], "--heartbeat-interval must be greater than 0"),
        (&["--heartbeat-interval", "18446744073709551615"], "--election-timeout"),
        (&["--election-timeout", "18446744073709551615"], "is too long"),
        (&["--max-request-bytes", "0"], "--max-request-bytes"),
        (&["--max-concurrent-streams", "0"], "--max-concurrent-streams must be at least 1"),
        (&["--max-concurrent-streams", "4294967296"], "--max-concurrent-streams"),
        (&["--max-request-bytes", "18446744073709551615"], "--max-request-bytes"),
        (&["--experimental-watch-progress-notify-interval", "0.1ns"], "at least 100ms"),
        (&["--experimental-watch-progress-notify-interval", "1ns"], "at least 100ms"),
        (&["--experimental-watch-progress-notify-interval", "99ms"], "at least 100ms"),
        (&["--experimental-watch-progress-notify-interval", "99999999999999999999999h"], "invalid duration"),
    ];
    for (args, expected) in cases {
        let err = flags(args).expect_err("must be rejected");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn port_zero_advertises_the_bound_port() {
    let config = flags(&[
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--advertise-client-urls",
        "http://127.0.0.1:0,http://client.example:2379",
        "--listen-peer-urls",
        "http://localhost:0",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:0",
        "--initial-cluster",
        "default=http://127.0.0.1:0",
    ])
    .expect("port 0 is valid for a single member");
    let bound = config
        .with_bound_ports(&[SocketAddr::from(([127, 0, 0, 1], 40001))], &[SocketAddr::from(([127, 0, 0, 1], 40002))]);
    assert_eq!(bound.advertise_client_urls, ["http://127.0.0.1:40001", "http://client.example:2379"]);
    assert_eq!(bound.advertise_peer_urls, ["http://127.0.0.1:40002"]);
    assert_eq!(bound.initial_cluster, [("default".to_string(), vec!["http://127.0.0.1:40002".to_string()])]);
}

#[test]
fn port_zero_is_refused_where_no_bound_port_can_replace_it() {
    let cases: &[(&[&str], &str)] = &[
        // Advertised port 0, but the listener has a fixed port: nothing would listen there.
        (&["--advertise-client-urls", "http://127.0.0.1:0"], "no --listen-client-urls URL"),
        (
            &["--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls", "http://10.0.0.1:0"],
            "no --listen-client-urls URL",
        ),
        // The other members could not know the port.
        (
            &[
                "--listen-peer-urls",
                "http://127.0.0.1:0",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:0",
                "--initial-cluster",
                "default=http://127.0.0.1:0,b=http://127.0.0.1:22380",
                "--peer-secret-file",
                "/s",
            ],
            "only for a single-member cluster",
        ),
    ];
    for (args, expected) in cases {
        let err = flags(args).expect_err("must be rejected");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn member_ids_are_stable_and_distinct() {
    let a = member_id(&["http://127.0.0.1:2380".into()], "t");
    assert_eq!(a, member_id(&["http://127.0.0.1:2380".into()], "t"));
    assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "u"));
    assert_ne!(a, member_id(&["http://127.0.0.1:2381".into()], "t"));
}

#[test]
fn https_urls_need_their_tls_files() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--listen-client-urls", "https://127.0.0.1:2379"],
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme",
        ),
        (
            &["--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", "c.pem"],
            "TLS key/cert (--cert-file, --key-file) must be provided",
        ),
        (
            &["--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", "c.pem", "--key-file", "k.pem", "--client-cert-auth"],
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (&["--listen-client-urls", "https://127.0.0.1:2379,http://127.0.0.1:2378"], "mixing http:// and https://"),
        (
            &["--listen-peer-urls", "https://127.0.0.1:2380"],
            "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1:2380",
        ),
        (
            &[
                "--listen-peer-urls",
                "https://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "https://127.0.0.1:2380",
                "--initial-cluster",
                "default=https://127.0.0.1:2380",
                "--peer-cert-file",
                "c.pem",
                "--peer-key-file",
                "k.pem",
            ],
            "--peer-trusted-ca-file must be provided",
        ),
    ];
    for (args, expected) in cases {
        let err = flags(args).expect_err("must be rejected");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn tls_files_are_kept_for_the_port_that_uses_them() {
    let config = flags(&[
        "--listen-client-urls",
        "https://127.0.0.1:2379",
        "--advertise-client-urls",
        "https://127.0.0.1:2379",
        "--cert-file",
        "server.pem",
        "--key-file",
        "server-key.pem",
        "--trusted-ca-file",
        "ca.pem",
        "--client-cert-auth",
    ])
    .expect("valid");
    let client = config.client_tls.expect("client TLS");
    assert_eq!(client.cert, std::path::PathBuf::from("server.pem"));
    assert!(client.client_cert_auth);
    assert!(config.peer_tls.is_none(), "the peer port stays plain HTTP");
    assert!(!config.listen_peer_https);
}

fn file_flags(yaml: &str, args: &[&str]) -> Result<(Flags, Vec<String>), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keel.yml");
    std::fs::write(&path, yaml).expect("write the file");
    let mut argv = vec!["keel".to_string(), "--config-file".to_string(), path.display().to_string()];
    argv.extend(args.iter().map(|arg| arg.to_string()));
    parse_flags(argv).map_err(|e| match e {
        FlagsError::Clap(error) => error.to_string(),
        FlagsError::File(message) => message,
    })
}

#[test]
fn a_config_file_sets_what_no_flag_sets() {
    let yaml = "name: from-file\n\
                data-dir: /var/lib/keel\n\
                initial-cluster: from-file=http://127.0.0.1:2380\n\
                heartbeat-interval: 50\n\
                wal-dir:\n\
                quota-backend-bytes: 0\n\
                logger: zap\n\
                client-transport-security:\n  cert-file: /c/server.pem\n  client-cert-auth: true\n\
                peer-transport-security:\n  trusted-ca-file: /c/ca.pem\n";
    let (flags, warnings) = file_flags(yaml, &["--heartbeat-interval", "75"]).expect("valid");
    assert_eq!(flags.name, "from-file");
    assert_eq!(flags.data_dir, Some("/var/lib/keel".into()));
    assert_eq!(flags.heartbeat_interval, 75, "a flag wins over the file");
    assert_eq!(flags.election_timeout, 1000, "what neither sets keeps its default");
    assert_eq!(flags.cert_file, Some("/c/server.pem".into()));
    assert!(flags.client_cert_auth);
    assert_eq!(flags.peer_trusted_ca_file, Some("/c/ca.pem".into()));
    assert_eq!(warnings.len(), 2, "wal-dir and logger are not keel's: {warnings:?}");
    assert!(warnings[1].contains("\"logger\" is not a keel setting"), "{warnings:?}");
    assert_eq!(flags.disk.quota_backend_bytes, 0);
}

#[test]
fn bad_config_files_are_refused_naming_the_file() {
    let cases: &[(&str, &str)] = &[
        ("name: [a, b]", "name must be a single value"),
        ("- just\n- a list", "not a mapping"),
        ("name: 'unterminated", "not YAML"),
        ("heartbeat-interval: soon", "--heartbeat-interval"),
        ("client-transport-security: yes", "must hold keys"),
    ];
    for (yaml, expected) in cases {
        let err = file_flags(yaml, &[]).map(|_| ()).expect_err("must be refused");
        assert!(err.contains(expected), "{yaml:?}: {err}");
    }
    let missing = parse_flags(["keel", "--config-file", "/nonexistent/keel.yml"]).map(|_| ());
    match missing {
        Err(FlagsError::File(message)) => assert!(message.contains("/nonexistent/keel.yml"), "{message}"),
        other => panic!("a missing file: {other:?}"),
    }
}
