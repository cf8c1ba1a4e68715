//! The chat relay example end to end: several clients spread over reactors, relay
//! across reactors, offline store-and-forward (bounded), a name clash, `who`,
//! unknown commands, and an over-long line.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use util::example::{self, Running};
use util::*;

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(server: &Running) -> Self {
        let s = connect(server.addr);
        Self {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn recv(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.ends_with('\n'),
            "connection closed while waiting for a line (got {line:?})"
        );
        line.trim_end_matches('\n').to_string()
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    fn login(server: &Running, name: &str) -> Self {
        let mut c = Self::new(server);
        assert_eq!(c.ask(&format!("login {name}")), "ok");
        c
    }
}

#[test]
fn relay_store_and_forward_who_and_errors() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "2"]);
    assert!(server.banner.ends_with("with 2 reactors"), "{}", server.banner);

    // Round-robin: alice on reactor 0, bob on reactor 1.
    let mut alice = Client::login(&server, "alice");
    let mut bob = Client::login(&server, "bob");
    let mut mallory = Client::new(&server);
    assert_eq!(mallory.ask("login alice"), "error name in use");
    assert_eq!(alice.ask("who"), "online alice bob");

    // Relayed at once, across reactors, both ways; UTF-8 intact.
    assert_eq!(alice.ask("to bob hi there"), "sent");
    assert_eq!(bob.recv(), "from alice hi there");
    assert_eq!(bob.ask("to alice héllo ✓ — ok"), "sent");
    assert_eq!(alice.recv(), "from bob héllo ✓ — ok");

    // Stored while dave is offline, delivered in order at his login.
    assert_eq!(alice.ask("to dave see you"), "stored");
    assert_eq!(bob.ask("to dave me too"), "stored");
    let mut dave = Client::new(&server);
    assert_eq!(dave.ask("login dave"), "ok");
    assert_eq!(dave.recv(), "from alice see you");
    assert_eq!(dave.recv(), "from bob me too");
    assert_eq!(dave.ask("who"), "online alice bob dave");

    // Errors.
    assert_eq!(dave.ask("frobnicate"), "error unknown command");
    assert_eq!(dave.ask("to"), "error unknown command");
    assert_eq!(mallory.ask("to bob hello"), "error not logged in");

    // Logging out (closing) frees the name.
    drop(bob);
    util::wait_for("bob to go offline", || alice.ask("who") == "online alice dave");
    let mut bob_again = Client::new(&server);
    assert_eq!(bob_again.ask("login bob"), "ok");
    drop(mallory);
}

#[test]
fn storage_per_offline_user_is_bounded_and_keeps_the_newest() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "2"]);
    let mut alice = Client::login(&server, "alice");
    for i in 0..105 {
        assert_eq!(alice.ask(&format!("to erin m{i}")), "stored");
    }
    let mut erin = Client::new(&server);
    assert_eq!(erin.ask("login erin"), "ok");
    // The bound is 100: the 5 oldest were dropped.
    for i in 5..105 {
        assert_eq!(erin.recv(), format!("from alice m{i}"));
    }
    assert_eq!(erin.ask("who"), "online alice erin");
}

#[test]
fn an_over_long_line_closes_the_connection() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "1"]);
    let mut c = Client::new(&server);
    let huge = vec![b'x'; 70 * 1024];
    let _ = c.writer.write_all(&huge);
    let mut rest = Vec::new();
    let _ = c.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no reply, just a close");
    // The server goes on.
    let mut d = Client::new(&server);
    assert_eq!(d.ask("who"), "online");
}

#[test]
fn offline_mailboxes_are_bounded_too() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "1"]);
    let mut alice = Client::login(&server, "alice");
    // 10,000 mailboxes fit; the 10,001st is refused. Pipelined: one write.
    let burst: String = (0..10_001).map(|i| format!("to nobody{i} hi\n")).collect();
    alice.writer.write_all(burst.as_bytes()).unwrap();
    for i in 0..10_000 {
        assert_eq!(alice.recv(), "stored", "message {i}");
    }
    assert_eq!(alice.recv(), "error too many offline users");
    // An existing mailbox still takes messages.
    assert_eq!(alice.ask("to nobody0 again"), "stored");
}

/// A bind failure names the address and keeps the operating system's reason.
#[test]
fn chat_and_bench_server_say_why_a_bind_failed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (name, args) in [
        ("chat", vec!["--addr", &addr]),
        ("bench_server", vec!["--kind", "coreloop", "--addr", &addr]),
        ("bench_server", vec!["--kind", "tokio", "--addr", &addr]),
    ] {
        let out = std::process::Command::new(example::example_bin(name))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&addr), "{name} names the address: {stderr}");
        assert!(
            stderr.contains("Address already in use"),
            "{name} keeps the reason: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
}

/// The example's own line client talks to its server: no `nc` needed.
#[test]
fn the_built_in_client_logs_in_and_asks_who_is_online() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "2"]);
    let mut alice = Client::new(&server);
    alice.send("login alice");
    assert_eq!(alice.recv(), "ok");
    let mut child = std::process::Command::new(example::example_bin("chat"))
        .args(["--connect", &server.addr.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"to alice hi\nlogin bob\nlogin bob\nwho\n")
        .unwrap(); // stdin closes here: the client half-closes, the server answers and closes
    let out = example::output_within(child);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "error not logged in\nok\nerror already logged in\nonline alice bob\n"
    );
}
