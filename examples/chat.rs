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
usage: chat [--addr ADDR] [--reactors N]     run the server
       chat --connect ADDR                   a line client: stdin to ADDR, replies to stdout

Options:
  --addr ADDR      address to listen on (default 127.0.0.1:7879; port 0 picks one)
  --reactors N     reactor threads (default: the CPU count)
  --connect ADDR   talk to a chat server at ADDR instead of running one
  -h, --help       print this help";

/// What the command line asks for.
enum Run {
    Serve(SocketAddr, usize),
    Connect(SocketAddr),
}

fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    Ok(v.to_string_lossy().into_owned())
}

fn parse_args() -> Result<Option<Run>, String> {
    use lexopt::prelude::*;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 7879));
    let mut reactors = num_cpus::get();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => {
                let v = value(&mut parser)?;
                addr = v.parse().map_err(|_| format!("invalid address '{v}' for --addr"))?;
            }
            Long("connect") => {
                let v = value(&mut parser)?;
                let to = v.parse().map_err(|_| format!("invalid address '{v}' for --connect"))?;
                return Ok(Some(Run::Connect(to)));
            }
            Long("reactors") => {
                let v = value(&mut parser)?;
                reactors = v.parse().map_err(|_| format!("invalid number '{v}' for --reactors"))?;
            }
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(Run::Serve(addr, reactors)))
}

/// The line client: what is typed goes to the server, what the server sends is
/// printed. Ends when the server closes, or after stdin ends and the server has
/// answered (our side is half-closed, so the server sees end of stream).
fn client(addr: SocketAddr) -> ExitCode {
    let stream = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: cannot connect to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut to_server = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(move || {
        // Errors end the copy; the server's reply or close ends the client.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_server);
        let _ = to_server.shutdown(std::net::Shutdown::Write);
    });
    match std::io::copy(&mut &stream, &mut std::io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: connection to {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let (addr, reactors) = match parse_args() {
        Ok(Some(Run::Serve(addr, reactors))) => (addr, reactors),
        Ok(Some(Run::Connect(to))) => return client(to),
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
    let directory = Arc::new(Mutex::new(Directory::default()));
    let started = Server::builder()
        .reactors(reactors)
        .max_input(MAX_LINE + 1)
        .max_output(4 * 1024 * 1024)
        .idle_timeout(Duration::from_secs(600))
        .bind(addr)
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
