//! A chat relay, the classic instant-messaging design: the server knows who is
//! online, relays a message to an online user at once — even when sender and
//! receiver live on different reactors — and stores messages for an offline user
//! until that user next logs in.
//!
//! Run the server, then a client in another terminal for each user (the same
//! program, as a line client: what you type goes to the server, what it sends is
//! printed):
//!
//! ```text
//! cargo run --release --example chat -- [--addr 127.0.0.1:7879] [--reactors N]
//! cargo run --release --example chat -- --connect 127.0.0.1:7879
//! ```
//!
//! With the `tls` feature the server speaks TLS with `--tls-cert PEM --tls-key
//! PEM` (or `--tls-self-signed`), and the client with `--tls-ca PEM` (the
//! certificate to trust: the server's own, or its CA's):
//!
//! ```text
//! cargo run --release --example chat --features tls -- --tls-cert cert.pem --tls-key key.pem
//! cargo run --release --example chat --features tls -- --connect 127.0.0.1:7879 --tls-ca cert.pem
//! ```
//!
//! The protocol is UTF-8 lines (any line client works, `nc` among them):
//!
//! | client sends      | reply                                                        |
//! |-------------------|--------------------------------------------------------------|
//! | `login NAME`      | `ok`, then any stored `from …` lines; `error name in use`; `error already logged in` on a second login |
//! | `to NAME TEXT`    | `sent` (relayed now) or `stored` (NAME is offline); NAME gets `from SENDER TEXT`; `error not logged in` before `login` |
//! | `who`             | `online NAME1 NAME2 …`, sorted                                |
//! | anything else     | `error unknown command`                                      |
//!
//! A line longer than 64 KiB closes the connection. At most 100 messages are stored
//! per offline user, beyond that the oldest is dropped; messages wait for at most
//! 10,000 offline users, beyond that `to` answers `error too many offline users`.
//! A user who does not read
//! what is relayed to them is disconnected once 4 MiB wait for them
//! (`Builder::max_output`), so no client can make the server hold unbounded output.
//!
//! How it uses coreloop: who is online is one map shared by every reactor (name →
//! `ConnId`); a relayed line goes to the receiver's connection with
//! `Handle::send`, which queues it on whichever reactor owns that connection.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tls.rs"]
mod tls;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{CloseReason, ConnId, Context, Handler, Server};

/// The longest line accepted, in bytes; a longer one closes the connection.
const MAX_LINE: usize = 64 * 1024;
/// Messages stored per offline user; beyond this the oldest is dropped.
const MAX_STORED: usize = 100;
/// Offline users with stored messages; a message for one more is refused.
const MAX_MAILBOXES: usize = 10_000;

#[derive(Default)]
struct Directory {
    online: HashMap<String, ConnId>,
    stored: HashMap<String, VecDeque<String>>,
}

impl Directory {
    /// Stores `line` for `to`; `false` if that needs a mailbox over the limit.
    fn store(&mut self, to: &str, line: String) -> bool {
        if !self.stored.contains_key(to) && self.stored.len() >= MAX_MAILBOXES {
            return false;
        }
        let queue = self.stored.entry(to.to_string()).or_default();
        if queue.len() == MAX_STORED {
            queue.pop_front();
        }
        queue.push_back(line);
        true
    }
}

/// One per reactor; all share the directory.
struct Chat {
    directory: Arc<Mutex<Directory>>,
}

/// Per connection: the name it logged in with.
#[derive(Default)]
struct Session {
    name: Option<String>,
}

impl Chat {
    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn command(&mut self, session: &mut Session, cx: &mut Context<'_>, line: &str) {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "login" if valid_name(rest) => self.login(session, cx, rest),
            "to" => match (&session.name, rest.split_once(' ')) {
                (None, _) => cx.write(b"error not logged in\n"),
                (Some(from), Some((to, text))) if valid_name(to) => {
                    let line = format!("from {from} {text}\n");
                    let reply = self.relay(cx, to, line);
                    cx.write(reply);
                }
                _ => cx.write(b"error unknown command\n"),
            },
            "who" if rest.is_empty() => {
                let mut names: Vec<String> = self.directory().online.keys().cloned().collect();
                names.sort();
                let mut reply = String::from("online");
                for n in names {
                    reply.push(' ');
                    reply.push_str(&n);
                }
                reply.push('\n');
                cx.write(reply.as_bytes());
            }
            _ => cx.write(b"error unknown command\n"),
        }
    }

    fn login(&mut self, session: &mut Session, cx: &mut Context<'_>, name: &str) {
        if session.name.is_some() {
            return cx.write(b"error already logged in\n");
        }
        let stored = {
            let mut dir = self.directory();
            if dir.online.contains_key(name) {
                return cx.write(b"error name in use\n");
            }
            dir.online.insert(name.to_string(), cx.id());
            dir.stored.remove(name).unwrap_or_default()
        };
        session.name = Some(name.to_string());
        cx.write(b"ok\n");
        for line in stored {
            cx.write(line.as_bytes());
        }
    }

    /// Relays `line` to `to` now if online, else stores it. Returns the reply.
    fn relay(&mut self, cx: &mut Context<'_>, to: &str, line: String) -> &'static [u8] {
        let mut dir = self.directory();
        if let Some(&id) = dir.online.get(to) {
            // Queued on the receiver's reactor, whichever it is.
            if cx.handle().send(id, line.clone()).is_ok() {
                return b"sent\n";
            }
        }
        if dir.store(to, line) {
            b"stored\n"
        } else {
            b"error too many offline users\n"
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace)
}

impl Handler for Chat {
    type Conn = Session;

    fn on_open(&mut self, _cx: &mut Context<'_>) -> Session {
        Session::default()
    }

    fn on_data(&mut self, session: &mut Session, cx: &mut Context<'_>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            if end > MAX_LINE {
                return cx.close();
            }
            let raw = input.split_to(end + 1);
            let raw = raw[..end].strip_suffix(b"\r").unwrap_or(&raw[..end]);
            match std::str::from_utf8(raw) {
                Ok(line) => self.command(session, cx, line),
                Err(_) => cx.write(b"error unknown command\n"),
            }
        }
        if input.len() > MAX_LINE {
            cx.close();
        }
    }

    fn on_close(&mut self, session: Session, cx: &mut Context<'_>, _why: CloseReason) {
        if let Some(name) = session.name {
            let mut dir = self.directory();
            if dir.online.get(&name) == Some(&cx.id()) {
                dir.online.remove(&name);
            }
        }
    }
}

const USAGE: &str = "\
usage: chat [--addr ADDR] [--reactors N] [--tls-cert PEM --tls-key PEM | --tls-self-signed]
                                             run the server
       chat --connect ADDR [--tls-ca PEM [--tls-name NAME]]
                                             a line client: stdin to ADDR, replies to stdout

Options:
  --addr ADDR      address to listen on (default 127.0.0.1:7879; port 0 picks one)
  --reactors N     reactor threads (default: the CPU count)
  --connect ADDR   talk to a chat server at ADDR instead of running one
  --tls-cert PEM   serve TLS (feature `tls`) with this certificate chain …
  --tls-key PEM    … and this private key
  --tls-self-signed
                   serve TLS with a certificate made at start (its fingerprint is printed)
  --tls-ca PEM     the client speaks TLS, trusting this certificate (the server's, or its CA's)
  --tls-name NAME  the name the server's certificate must carry (default: the address)
  -h, --help       print this help";

/// What the command line asks for.
enum Run {
    Serve(SocketAddr, usize, tls::TlsArgs),
    Connect(SocketAddr, tls::TlsArgs),
}

fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    Ok(v.to_string_lossy().into_owned())
}

fn parse_args() -> Result<Option<Run>, String> {
    use lexopt::prelude::*;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 7879));
    let mut reactors = num_cpus::get();
    let mut connect = None;
    let mut tls = tls::TlsArgs::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long(name) if name.starts_with("tls-") => {
                let name = name.to_string();
                tls.take(&name, &mut parser)?;
            }
            Long("addr") => {
                let v = value(&mut parser)?;
                addr = v.parse().map_err(|_| format!("invalid address '{v}' for --addr"))?;
            }
            Long("connect") => {
                let v = value(&mut parser)?;
                let to = v.parse().map_err(|_| format!("invalid address '{v}' for --connect"))?;
                connect = Some(to);
            }
            Long("reactors") => {
                let v = value(&mut parser)?;
                reactors = v.parse().map_err(|_| format!("invalid number '{v}' for --reactors"))?;
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(match connect {
        Some(to) => Run::Connect(to, tls),
        None => Run::Serve(addr, reactors, tls),
    }))
}

/// The line client, on coreloop too: one reactor, one outbound connection
/// (TLS with `--tls-ca`). What is typed goes to the server (a thread reads stdin
/// and sends each line through the handle); what the server sends is printed.
/// Ends when the server closes, or after stdin ends and the server has answered
/// (our side is half-closed, so the server sees end of stream).
fn client(addr: SocketAddr, tls: &tls::TlsArgs) -> ExitCode {
    let config = match tls::client(tls, addr.ip()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let (tx, events) = std::sync::mpsc::channel();
    let started = Server::builder()
        .reactors(1)
        .start(move |_| LineClient { events: tx.clone() });
    let engine = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {}", cli::one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let handle = engine.handle();
    #[cfg(feature = "tls")]
    let asked = match config {
        Some((config, name)) => handle.connect_tls(addr, config, name, 0),
        None => handle.connect(addr, 0),
    };
    #[cfg(not(feature = "tls"))]
    let asked = {
        let _: Option<()> = config; // asking for TLS without the feature was refused
        handle.connect(addr, 0)
    };
    if let Err(e) = asked {
        eprintln!("chat: {}", cli::one_line(&e));
        return ExitCode::FAILURE;
    }
    let code = match events.recv() {
        Ok(ClientEvent::Open(id)) => {
            std::thread::spawn(move || {
                let mut line = String::new();
                let stdin = std::io::stdin();
                while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
                    if handle.message(id, Typed::Line(std::mem::take(&mut line))).is_err() {
                        return;
                    }
                }
                let _ = handle.message(id, Typed::End);
            });
            match events.recv() {
                Ok(ClientEvent::Closed(CloseReason::PeerClosed | CloseReason::Local)) | Err(_) => ExitCode::SUCCESS,
                Ok(ClientEvent::Closed(why)) => {
                    eprintln!("chat: connection to {addr} ended: {why}");
                    ExitCode::FAILURE
                }
                Ok(_) => ExitCode::FAILURE,
            }
        }
        Ok(ClientEvent::Failed(e)) => {
            eprintln!("chat: cannot connect to {addr}: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    };
    let _ = engine.shutdown(Duration::from_secs(1));
    code
}

/// What the line client's connection tells the main thread.
enum ClientEvent {
    Open(ConnId),
    Failed(String),
    Closed(CloseReason),
}

/// What the stdin thread tells the connection.
enum Typed {
    Line(String),
    /// Stdin ended: half-close.
    End,
}

struct LineClient {
    events: std::sync::mpsc::Sender<ClientEvent>,
}

impl Handler<Typed> for LineClient {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_, Typed>) {
        let _ = self.events.send(ClientEvent::Open(cx.id()));
    }

    fn on_data(&mut self, _: &mut (), _cx: &mut Context<'_, Typed>, input: &mut BytesMut) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(input).and_then(|()| out.flush());
        input.clear();
    }

    fn on_message(&mut self, _: &mut (), cx: &mut Context<'_, Typed>, msg: Typed) {
        match msg {
            Typed::Line(line) => cx.write(line.as_bytes()),
            Typed::End => cx.shutdown_write(),
        }
    }

    fn on_close(&mut self, _: (), _cx: &mut Context<'_, Typed>, why: CloseReason) {
        let _ = self.events.send(ClientEvent::Closed(why));
    }

    fn on_connect_error(
        &mut self,
        _cx: &mut coreloop::ReactorContext<'_, (), Typed>,
        _tag: u64,
        _to: &coreloop::Endpoint,
        e: std::io::Error,
    ) {
        let _ = self.events.send(ClientEvent::Failed(e.to_string()));
    }
}

fn main() -> ExitCode {
    let (addr, reactors, tls) = match parse_args() {
        Ok(Some(Run::Serve(addr, reactors, tls))) => (addr, reactors, tls),
        Ok(Some(Run::Connect(to, tls))) => return client(to, &tls),
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chat: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    cli::init_logging(None);
    let signals = match cli::signals("chat") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let acceptor = match tls::server(&tls, "chat") {
        Ok(acceptor) => acceptor,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "tls")]
    let listen = match acceptor {
        Some(acceptor) => coreloop::Listen::tcp(addr).tls(acceptor),
        None => coreloop::Listen::tcp(addr),
    };
    #[cfg(not(feature = "tls"))]
    let listen = {
        let _: Option<()> = acceptor; // asking for TLS without the feature was refused
        coreloop::Listen::tcp(addr)
    };
    let directory = Arc::new(Mutex::new(Directory::default()));
    let started = Server::builder()
        .reactors(reactors)
        .max_input(MAX_LINE + 1)
        .max_output(4 * 1024 * 1024)
        .idle_timeout(Duration::from_secs(600))
        .listen(listen)
        .start(|_| Chat {
            directory: Arc::clone(&directory),
        });
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {}", cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    cli::banner(&server.local_addrs()[0].to_string(), reactors);
    cli::shutdown_on_signal(signals, server.handle(), Duration::from_secs(5));
    match server.join() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
