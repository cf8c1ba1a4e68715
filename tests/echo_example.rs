//! The echo example, run as a user runs it: banner, byte-exact echo, per-reactor
//! lines and exit status 0 on SIGTERM and SIGINT, `--help`, bad options.

mod util;

use util::example::{self, exit_value};
use util::*;

#[test]
fn echoes_byte_exact_and_exits_cleanly_on_sigterm() {
    let server = example::start(&["--reactors", "2"]);
    let data = pattern(3 << 20, 5);
    let a = connect(server.addr);
    let b = connect(server.addr);
    assert!(roundtrip(&a, &data) == data);
    let binary = b"\0\0\0binary\xff\0";
    assert!(roundtrip(&b, binary) == binary);
    drop((a, b));

    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0, "stderr: {lines:?}");
    assert_eq!(lines.len(), 2, "one line per reactor: {lines:?}");
    let mut total_in = 0;
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("reactor {i}: accepted=1 closed=1 bytes_in=")),
            "{line}"
        );
        let bytes_in = exit_value(&lines, i, "bytes_in");
        assert!(
            line.ends_with(&format!("bytes_out={bytes_in} panics=0 proxy_errors=0")),
            "{line}"
        );
        total_in += bytes_in;
    }
    assert_eq!(total_in, (data.len() + binary.len()) as u64);
}

#[test]
fn sigint_also_shuts_down_with_status_zero() {
    let server = example::start(&["--reactors", "1"]);
    let s = connect(server.addr);
    assert_eq!(roundtrip(&s, b"hi"), b"hi");
    drop(s);
    server.signal("-INT");
    let (code, lines) = server.finish();
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        ["reactor 0: accepted=1 closed=1 bytes_in=2 bytes_out=2 panics=0 proxy_errors=0"]
    );
}

#[test]
fn help_lists_the_options() {
    let out = example::run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--addr",
        "--reactors",
        "--max-conns",
        "--idle-timeout",
        "--grace",
        "--distribution",
        "--backlog",
        "--pin-cores",
        "--stats-interval",
        "--proxy-protocol",
        "--trusted-proxies",
        "--handover",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--log",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn bad_options_give_one_line_and_status_two() {
    let bad: [&[&str]; 19] = [
        &["--bogus"],
        &["--addr", "not-an-address"],
        &["--reactors", "x"],
        &["--reactors", "0"],
        &["--max-conns", "0"],
        &["--grace", "-1"],
        &["--idle-timeout"],
        &["--distribution", "random"],
        &["--backlog", "0"],
        &["--stats-interval", "0"],
        &["--log", "loud"],
        &["--distribution", "reuseport", "--unix", "/tmp/coreloop-never.sock"],
        &["--backlog", "-5"],
        &["--handover", "/tmp/x", "--distribution", "reuseport"],
        &["--handover", "/nonexistent-dir/handover.sock"],
        &["--tls-cert", "/nonexistent/cert.pem"],
        &["--tls-self-signed", "--tls-key", "/nonexistent/key.pem"],
        &["--tls-ca", "/nonexistent/ca.pem"],
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    ];
    for args in bad {
        let out = example::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn each_distribution_serves_and_keeps_the_exit_lines() {
    for strategy in ["round-robin", "least-conn", "reuseport"] {
        let server = example::start(&[
            "--reactors",
            "2",
            "--distribution",
            strategy,
            "--backlog",
            "64",
            "--pin-cores",
        ]);
        let clients: Vec<_> = (0..4).map(|_| connect(server.addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            let data = pattern(5000, i as u64);
            assert!(roundtrip(c, &data) == data, "{strategy}");
        }
        drop(clients);
        server.signal("-TERM");
        let (code, lines) = server.finish();
        assert_eq!(code, 0, "{strategy}: {lines:?}");
        assert_eq!(lines.len(), 2, "{strategy}: only the exit lines: {lines:?}");
        let accepted: Vec<u64> = (0..2).map(|i| exit_value(&lines, i, "accepted")).collect();
        assert_eq!(accepted.iter().sum::<u64>(), 4, "{strategy}: {lines:?}");
        if strategy != "reuseport" {
            // Both acceptor strategies balance sequential connections exactly.
            assert_eq!(accepted, [2, 2], "{strategy}: {lines:?}");
        }
    }
}

#[test]
fn stats_interval_prints_the_table_and_trace_logs_connection_life() {
    let server = example::start(&["--reactors", "2", "--stats-interval", "0.1", "--log", "trace"]);
    let c = connect(server.addr);
    assert_eq!(roundtrip(&c, b"counted"), b"counted");
    // A table after the connection opened: a header, a row per reactor, the total
    // row (one connection open, 7 bytes each way) and the acceptor's back-offs.
    let mut table: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    server.wait_line("a stats table with the connection counted", &mut seen, |line| {
        if line.trim_start().starts_with("reactor ") && line.contains("active") {
            table.clear();
        }
        table.push(line.to_string());
        let Some(total) = table.iter().find(|l| l.trim_start().starts_with("total")) else {
            return false;
        };
        let total: Vec<&str> = total.split_whitespace().collect();
        // total active accepted closed bytes_in bytes_out …
        line.starts_with("accept back-offs:") && total[1..6] == ["1", "1", "0", "7", "7"]
    });
    assert_eq!(table.len(), 5, "{table:?}");
    assert_eq!(table[4], "accept back-offs: 0");
    drop(c);
    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0);
    // Trace level logs each connection's open and close.
    seen.extend(lines.iter().cloned());
    assert!(
        seen.iter().any(|l| l.contains("TRACE") && l.contains("opened")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("TRACE") && l.contains("closing")),
        "{seen:?}"
    );
    // The exit lines come last, unchanged.
    let n = lines.len();
    assert!(lines[n - 2].starts_with("reactor 0: accepted="), "{lines:?}");
    assert!(lines[n - 1].starts_with("reactor 1: accepted="), "{lines:?}");
}

#[test]
fn the_longest_grace_still_shuts_down_on_sigterm() {
    let server = example::start(&["--reactors", "1", "--grace", "18446744073709551615"]);
    let s = connect(server.addr);
    assert_eq!(roundtrip(&s, b"hi"), b"hi");
    drop(s);
    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0, "stderr: {lines:?}");
    assert_eq!(
        lines,
        ["reactor 0: accepted=1 closed=1 bytes_in=2 bytes_out=2 panics=0 proxy_errors=0"]
    );
}

#[test]
fn handover_restarts_without_a_failed_connection() {
    let dir = TempDir::new("echo-handover");
    let path = dir.path("handover.sock");
    let path = path.to_str().unwrap();
    let old = example::start(&["--reactors", "2", "--handover", path, "--grace", "30"]);
    let addr = old.addr.to_string();
    let load = util::load::Load::start(old.addr, 4, 2, &[]);
    wait_for("cycles on the old echo", || load.cycles() >= 100);
    // The successor binds the same address: it takes the socket over instead.
    let new = example::start_example(
        "echo",
        &["--addr", &addr, "--reactors", "2", "--handover", path, "--grace", "30"],
    );
    assert_eq!(new.addr, old.addr);
    let handed = load.cycles();
    wait_for("cycles on the new echo", || load.cycles() >= handed + 200);
    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // The old one drained: its streams closed by their clients, it exits 0.
    let (code, lines) = old.finish();
    assert_eq!(code, 0, "{lines:?}");
    new.signal("-TERM");
    let (code, lines) = new.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(exit_value(&lines, 0, "accepted") + exit_value(&lines, 1, "accepted") >= 100);
}

/// TLS options say what is wrong in one line: a missing file is named; built
/// without the feature, asking for TLS names the feature.
#[test]
fn tls_options_name_what_is_wrong() {
    let out = example::run(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    if cfg!(feature = "tls") {
        assert!(stderr.contains("--tls-cert /nonexistent/cert.pem"), "{stderr}");
    } else {
        assert!(stderr.contains("`tls` feature"), "{stderr}");
    }
    let out = example::run(&["--tls-self-signed", "--addr", "999.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
}
