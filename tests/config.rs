//! Configuration errors are refused before anything starts; bind failures name the
//! address; several listeners feed the same reactors.

mod util;

use std::time::Duration;

use coreloop::{Error, Server};
use util::*;

#[test]
fn zero_reactors_is_a_config_error() {
    let err = Server::builder()
        .reactors(0)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap_err();
    assert!(matches!(err, Error::Config { option: "reactors", .. }), "{err:?}");
    assert_eq!(err.to_string(), "invalid configuration: reactors: must be at least 1");
}

#[test]
fn absurd_settings_are_refused_with_the_option_named() {
    let cases: Vec<(&str, coreloop::Builder)> = vec![
        (
            "reactors",
            Server::builder().reactors(coreloop::Builder::MAX_REACTORS + 1),
        ),
        ("backlog", Server::builder().backlog(0)),
        ("read_buffer_size", Server::builder().read_buffer_size(10)),
        ("read_budget", Server::builder().read_budget(0)),
        ("inbox_capacity", Server::builder().inbox_capacity(0)),
        ("max_connections", Server::builder().max_connections(0)),
        ("max_input", Server::builder().max_input(0)),
        ("max_output", Server::builder().max_output(1)),
        ("write_watermarks", Server::builder().write_watermarks(0, 0)),
        ("accept_backoff", Server::builder().accept_backoff(Duration::ZERO)),
        ("idle_timeout", Server::builder().idle_timeout(Duration::ZERO)),
        ("linger", Server::builder().linger(Duration::from_secs(3600))),
    ];
    for (option, builder) in cases {
        match builder.bind(localhost()).start(|_| Echo) {
            Err(Error::Config { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn inverted_watermarks_are_refused_with_both_values() {
    let err = Server::builder()
        .write_watermarks(1 << 20, 1024)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: write_watermarks: low (1048576) is above high (1024)"
    );
}

#[test]
fn bind_failure_names_the_address() {
    let first = echo_server(1);
    let taken = first.local_addrs()[0];
    let err = Server::builder().reactors(1).bind(taken).start(|_| Echo).unwrap_err();
    match &err {
        Error::Bind { addr, source } => {
            assert_eq!(*addr, coreloop::Endpoint::Tcp(taken));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(err.to_string(), format!("failed to bind {taken}"));
}

#[test]
fn several_listeners_feed_the_same_reactors() {
    let server = Server::builder()
        .reactors(2)
        .bind(localhost())
        .bind(([127, 0, 0, 2], 0))
        .start(|_| Echo)
        .unwrap();
    let addrs = server.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    for addr in &addrs {
        let s = connect(*addr);
        assert_eq!(roundtrip(&s, b"either door"), b"either door");
    }
    let report = server.shutdown(DEADLINE).unwrap();
    assert_eq!(report.stats.total().accepted, 2);
    // Round-robin spans listeners: one connection each.
    assert!(report.stats.reactors.iter().all(|r| r.accepted == 1), "{report:?}");
}
