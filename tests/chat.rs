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

/// Runs the example's line client with `args`, `stdin` as its input (closed
/// after it: the client half-closes), and collects its output.
fn line_client(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = std::process::Command::new(example::example_bin("chat"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    example::output_within(child)
}

/// The example's own line client talks to its server: no `nc` needed.
#[test]
fn the_built_in_client_logs_in_and_asks_who_is_online() {
    let server = example::start_example("chat", &["--addr", "127.0.0.1:0", "--reactors", "2"]);
    let mut alice = Client::new(&server);
    alice.send("login alice");
    assert_eq!(alice.recv(), "ok");
    // Stdin ends after these lines: the client half-closes, the server answers and closes.
    let out = line_client(
        &["--connect", &server.addr.to_string()],
        b"to alice hi\nlogin bob\nlogin bob\nwho\n",
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "error not logged in\nok\nerror already logged in\nonline alice bob\n"
    );
}

/// With the `tls` feature, the chat server serves TLS from PEM files and its
/// own line client talks to it through `--tls-ca`; a plaintext client on the
/// TLS port is closed without a reply.
#[cfg(feature = "tls")]
#[test]
fn server_and_client_speak_tls_from_pem_files() {
    let pki = util::tls::Pki::new("chat");
    let dir = util::TempDir::new("chat-tls");
    let (cert, key, ca) = (dir.path("cert.pem"), dir.path("key.pem"), dir.path("ca.pem"));
    std::fs::write(&cert, &pki.server.cert_pem).unwrap();
    std::fs::write(&key, &pki.server.key_pem).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let server = example::start_example(
        "chat",
        &[
            "--addr",
            "127.0.0.1:0",
            "--reactors",
            "2",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );

    // A rustls client logs in as alice.
    let mut alice = util::tls::tls_connect(server.addr, pki.client_config(&[]));
    alice.write_all(b"login alice\n").unwrap();
    let mut reply = [0u8; 3];
    alice.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ok\n");

    // The built-in client, trusting the CA, checking the certificate's
    // 127.0.0.1 (by default) and then its `localhost` (with --tls-name).
    for extra in [&[][..], &["--tls-name", "localhost"][..]] {
        let addr = server.addr.to_string();
        let mut args = vec!["--connect", &addr, "--tls-ca", ca.to_str().unwrap()];
        args.extend(extra);
        let out = line_client(&args, b"login bob\nto alice over tls\nwho\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\nsent\nonline alice bob\n");
        let mut line = [0u8; 18];
        alice.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"from bob over tls\n");
    }

    // A client trusting some other CA is refused, and says why.
    let other = util::tls::Pki::new("chat-other");
    let other_ca = dir.path("other.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let out = line_client(
        &[
            "--connect",
            &server.addr.to_string(),
            "--tls-ca",
            other_ca.to_str().unwrap(),
        ],
        b"who\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot connect") && stderr.contains("certificate"),
        "{stderr}"
    );

    // Plaintext on the TLS port: closed, nothing relayed.
    let mut plain = Client::new(&server);
    plain.send("login mallory");
    let mut rest = Vec::new();
    let _ = plain.reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "nothing but a TLS alert before the close: {rest:?}"
    );
}
