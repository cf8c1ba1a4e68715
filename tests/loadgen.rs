//! The load generator, run as `scripts/bench.sh` runs it, against the echo example:
//! each mode exits 0 with one JSON line, operations done, no errors, and the
//! server's CPU per operation when given its pid.

mod util;

use std::process::Command;

use util::example::{self, example_bin};

/// Runs loadgen with `args` plus `--json` and returns the JSON line.
fn loadgen(args: &[&str]) -> String {
    let out = Command::new(example_bin("loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "loadgen {args:?} failed: {stdout} {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    stdout.trim().to_string()
}

/// The number after `"key":` in a one-line JSON object.
fn field(json: &str, key: &str) -> f64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn every_mode_runs_clean_against_the_echo_example() {
    let server = example::start(&["--reactors", "2"]);
    let addr = server.addr.to_string();
    let pid = server.pid().to_string();

    let echo = loadgen(&[
        "echo",
        "--addr",
        &addr,
        "--conns",
        "8",
        "--inflight",
        "4",
        "--size",
        "100",
        "--count",
        "50",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(field(&echo, "ops"), 8.0 * 50.0, "{echo}");
    assert_eq!(field(&echo, "errors"), 0.0, "{echo}");
    // Present (a window this short may round the server's CPU ticks to zero).
    assert!(field(&echo, "server_cpu_us_per_op") >= 0.0, "{echo}");

    // Connection cycles for a short window: connects still in flight when the
    // window ends are not errors.
    let cycles = loadgen(&[
        "connrate",
        "--addr",
        &addr,
        "--clients",
        "8",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ]);
    assert!(field(&cycles, "ops") > 0.0, "{cycles}");
    assert_eq!(field(&cycles, "errors"), 0.0, "{cycles}");

    let hold = loadgen(&[
        "hold",
        "--addr",
        &addr,
        "--conns",
        "50",
        "--hold",
        "0.1",
        "--sources",
        "2",
    ]);
    assert_eq!(field(&hold, "ops"), 50.0, "{hold}");
    assert_eq!(field(&hold, "errors"), 0.0, "{hold}");

    server.signal("-TERM");
    let (code, _) = server.finish();
    assert_eq!(code, 0);
}

#[test]
fn help_bad_counts_and_a_refused_server_end_at_once_with_the_right_status() {
    let run = |args: &[&str]| {
        let out = Command::new(example_bin("loadgen"))
            .args(args)
            .output()
            .expect("run loadgen");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.code(), stdout, stderr)
    };
    for help in [&["--help"][..], &["-h"], &["echo", "--help"]] {
        let (code, stdout, _) = run(help);
        assert_eq!(code, Some(0), "{help:?}");
        assert!(stdout.starts_with("usage: loadgen echo"), "{stdout}");
        for mode in ["echo", "connrate", "hold", "--server-pid", "--json"] {
            assert!(stdout.contains(mode), "{mode} in {stdout}");
        }
    }
    for zero in [
        &["echo", "--conns", "0"][..],
        &["connrate", "--clients", "0"],
        &["hold", "--conns", "0"],
    ] {
        let (code, _, stderr) = run(zero);
        assert_eq!(code, Some(2), "{zero:?}: {stderr}");
        assert!(stderr.contains("--conns") && stderr.contains("at least 1"), "{stderr}");
    }
    // Nobody listens: every connect is refused. The run ends at once (not after
    // its 60-second window) with status 1 and the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = std::time::Instant::now();
    let (code, _, stderr) = run(&["echo", "--addr", &addr, "--duration", "60", "--json"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("connect to {addr} failed")) && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
