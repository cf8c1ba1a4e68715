//! The echo example, run as a user runs it: banner, byte-exact echo, per-reactor
//! lines and exit status 0 on SIGTERM and SIGINT, `--help`, bad options.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use util::*;

/// Builds the example once (a no-op when `cargo test` already did) and returns its path.
fn echo_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "echo", "--manifest-path", manifest])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the echo example failed");
        let mut dir = std::env::current_exe().unwrap();
        dir.pop(); // deps/
        dir.pop(); // debug/
        dir.join("examples").join("echo")
    })
    .clone()
}

fn run(args: &[&str]) -> Output {
    Command::new(echo_bin())
        .args(args)
        .output()
        .expect("run the echo example")
}

/// Starts the example on a free port and returns it with the address from its banner.
fn start(reactors: &str) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(echo_bin())
        .args(["--addr", "127.0.0.1:0", "--reactors", reactors])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the echo example");
    let mut banner = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let words: Vec<&str> = banner.split_whitespace().collect();
    assert_eq!(words.len(), 6, "banner: {banner:?}");
    assert_eq!(
        (words[0], words[1], words[4], words[5]),
        ("listening", "on", reactors, "reactors")
    );
    (child, words[2].parse().expect("the banner names the bound address"))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn finish(mut child: Child) -> (i32, String) {
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code().expect("exited, not killed"), stderr)
}

#[test]
fn echoes_byte_exact_and_exits_cleanly_on_sigterm() {
    let (child, addr) = start("2");
    let data = pattern(3 << 20, 5);
    let a = connect(addr);
    let b = connect(addr);
    assert!(roundtrip(&a, &data) == data);
    let binary = b"\0\0\0binary\xff\0";
    assert!(roundtrip(&b, binary) == binary);
    drop((a, b));

    signal(&child, "-TERM");
    let (code, stderr) = finish(child);
    assert_eq!(code, 0, "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per reactor: {stderr}");
    let expect_bytes = (data.len() + binary.len()) as u64;
    let mut total_in = 0;
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("reactor {i}: accepted=1 closed=1 bytes_in=")),
            "{line}"
        );
        let bytes_in: u64 = line
            .split("bytes_in=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(line.ends_with(&format!("bytes_out={bytes_in} panics=0")), "{line}");
        total_in += bytes_in;
    }
    assert_eq!(total_in, expect_bytes);
}

#[test]
fn sigint_also_shuts_down_with_status_zero() {
    let (child, addr) = start("1");
    let s = connect(addr);
    assert_eq!(roundtrip(&s, b"hi"), b"hi");
    signal(&child, "-INT");
    let (code, stderr) = finish(child);
    assert_eq!(code, 0);
    assert_eq!(
        stderr.trim(),
        "reactor 0: accepted=1 closed=1 bytes_in=2 bytes_out=2 panics=0"
    );
}

#[test]
fn help_lists_the_options() {
    let out = run(&["--help"]);
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
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
