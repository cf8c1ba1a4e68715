//! What the PROXY preamble costs in system calls, counted by `strace` on the echo
//! example: a header that arrives with the client's first bytes costs no read
//! of its own; one that arrives alone costs exactly one; a listener with the
//! protocol off reads as it always did.

use std::io::{Read, Write};
use std::process::Command;

use libtest_mimic::Failed;

use crate::check;
use crate::util::example::{echo_bin, spawn_example};
use crate::util::{TempDir, connect};

const HEADER: &[u8] = b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n";

/// How the client sends its first bytes.
#[derive(Clone, Copy, Debug)]
enum Send {
    /// No header (the listener's protocol is off).
    Plain,
    /// Header and payload in one write.
    Together,
    /// The header, then — once the server has opened the connection — the payload.
    Apart,
}

/// Runs one connection (64 bytes echoed, then closed by the client) against the
/// echo example under `strace`; returns the `recvfrom` calls made on it.
fn reads_for(send: Send, dir: &TempDir) -> Result<usize, Failed> {
    let trace = dir.path(&format!("{send:?}.strace"));
    let mut args = vec!["--addr", "127.0.0.1:0", "--reactors", "1", "--log", "info"];
    if !matches!(send, Send::Plain) {
        args.extend(["--proxy-protocol", "required"]);
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=accept4,recvfrom", "-o"])
        .arg(&trace)
        .arg(echo_bin());
    let echo = spawn_example(&mut command, &args);
    let mut s = connect(echo.addr);
    let payload = [b'x'; 64];
    match send {
        Send::Plain => s.write_all(&payload)?,
        Send::Together => s.write_all(&[HEADER, &payload[..]].concat())?,
        Send::Apart => {
            s.write_all(HEADER)?;
            // The server logs the connection at `on_open`, once the header is read.
            echo.wait_line("the connection opened", &mut Vec::new(), |l| l.contains(" serves "));
            s.write_all(&payload)?;
        }
    }
    let mut back = [0u8; 64];
    s.read_exact(&mut back)?;
    check(back == payload, || "the echo differs".into())?;
    drop(s);
    // SIGTERM to the echo example itself, strace's child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", echo.pid()))?;
    let pid = children.split_whitespace().next().ok_or("strace has no child")?;
    check(Command::new("kill").args(["-TERM", pid]).status()?.success(), || {
        "kill".into()
    })?;
    let (status, lines) = echo.finish();
    check(status == 0, || format!("echo exited with {status}: {lines:?}"))?;
    let text = std::fs::read_to_string(&trace)?;
    // The connection's descriptor, from the one accept that returned one (its
    // line may be split by another thread's call: `accept4(5, <unfinished ...>`
    // and, later, `<... accept4 resumed>…) = 11`).
    let fd = text
        .lines()
        .filter(|l| l.contains("accept4") && !l.contains("<unfinished") && !l.contains("= -1"))
        .find_map(|l| l.rsplit_once("= ").and_then(|(_, fd)| fd.trim().parse::<u32>().ok()))
        .ok_or_else(|| format!("no accept in the trace: {text}"))?;
    Ok(text.lines().filter(|l| l.contains(&format!("recvfrom({fd}, "))).count())
}

pub fn proxy_preamble_reads() -> Result<(), Failed> {
    let dir = TempDir::new("strace-preamble");
    let plain = reads_for(Send::Plain, &dir)?;
    let together = reads_for(Send::Together, &dir)?;
    let apart = reads_for(Send::Apart, &dir)?;
    check(plain == 2, || {
        format!("a plain connection took {plain} reads, not 2 (its bytes, its end)")
    })?;
    check(together == plain, || {
        format!("a header with the first bytes took {together} reads, a plain connection {plain}")
    })?;
    check(apart == plain + 1, || {
        format!("a header alone took {apart} reads, a plain connection {plain}: not one more")
    })
}
