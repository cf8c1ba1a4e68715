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
        assert!(line.ends_with(&format!("bytes_out={bytes_in} panics=0")), "{line}");
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
        ["reactor 0: accepted=1 closed=1 bytes_in=2 bytes_out=2 panics=0"]
    );
}

#[test]
fn help_lists_the_options() {
    let out = example::run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for option in ["--addr", "--reactors", "--max-conns", "--idle-timeout", "--grace"] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn bad_options_give_one_line_and_status_two() {
    let bad: [&[&str]; 7] = [
        &["--bogus"],
        &["--addr", "not-an-address"],
        &["--reactors", "x"],
        &["--reactors", "0"],
        &["--max-conns", "0"],
        &["--grace", "-1"],
        &["--idle-timeout"],
    ];
    for args in bad {
        let out = example::run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
