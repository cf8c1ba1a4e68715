//! A steady load for restart tests: connect-echo-close cycles and long-lived
//! streams, every byte checked, every failure recorded (never retried).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::pattern;

/// How long any one step of a client may take before it counts as failed.
const STEP: Duration = Duration::from_secs(10);

/// Clients running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    streamed: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Vec<String>>>,
}

/// What the clients did.
#[derive(Debug)]
pub struct LoadReport {
    /// Connect-echo-close cycles completed, byte-exact.
    pub cycles: u64,
    /// Bytes echoed byte-exact on the long-lived streams.
    pub streamed: u64,
    /// Every failed connection or step, with what went wrong.
    pub failures: Vec<String>,
}

impl Load {
    /// `cyclers` threads each connecting, echoing 1 KiB and closing in a loop
    /// (from `sources`, in turn, when given: a client address each); `streams`
    /// connections each echoing 4 KiB chunks until stopped.
    pub fn start(to: SocketAddr, cyclers: usize, streams: usize, sources: &[std::net::IpAddr]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicU64::new(0));
        let streamed = Arc::new(AtomicU64::new(0));
        let mut clients = Vec::new();
        for i in 0..cyclers {
            let (stop, cycles) = (Arc::clone(&stop), Arc::clone(&cycles));
            let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
            clients.push(thread::spawn(move || {
                let mut failures = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match cycle(to, source, i as u64 * 1_000_000 + n) {
                        Ok(()) => {
                            cycles.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.push(format!("cycler {i}, cycle {n}: {e}")),
                    }
                }
                failures
            }));
        }
        for i in 0..streams {
            let (stop, streamed) = (Arc::clone(&stop), Arc::clone(&streamed));
            clients.push(thread::spawn(move || match stream(to, &stop, &streamed, i as u64) {
                Ok(()) => Vec::new(),
                Err(e) => vec![format!("stream {i}: {e}")],
            }));
        }
        Load {
            stop,
            cycles,
            streamed,
            clients,
        }
    }

    /// Cycles completed so far.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    /// Bytes echoed on the streams so far.
    pub fn streamed(&self) -> u64 {
        self.streamed.load(Ordering::Relaxed)
    }

    /// Stops every client (streams close cleanly) and reports.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for c in self.clients {
            failures.extend(c.join().expect("a load client panicked"));
        }
        LoadReport {
            cycles: self.cycles.load(Ordering::Relaxed),
            streamed: self.streamed.load(Ordering::Relaxed),
            failures,
        }
    }
}

fn open(to: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect_timeout(&to, STEP)?,
        Some(ip) => {
            let socket = socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&to.into(), STEP)?;
            socket.into()
        }
    };
    stream.set_read_timeout(Some(STEP))?;
    stream.set_write_timeout(Some(STEP))?;
    Ok(stream)
}

/// One connection: 1 KiB out, the same 1 KiB back, a clean close both ways.
fn cycle(to: SocketAddr, source: Option<std::net::IpAddr>, seed: u64) -> Result<(), String> {
    let mut s = open(to, source).map_err(|e| format!("connect: {e}"))?;
    let data = pattern(1024, seed);
    s.write_all(&data).map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0; data.len()];
    s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
    if got != data {
        return Err("echo differs".into());
    }
    s.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).map_err(|e| format!("read to close: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the echo", rest.len()));
    }
    Ok(())
}

/// One connection echoing 4 KiB chunks until `stop`, then closing cleanly.
fn stream(to: SocketAddr, stop: &AtomicBool, streamed: &AtomicU64, seed: u64) -> Result<(), String> {
    let mut s = open(to, None).map_err(|e| format!("connect: {e}"))?;
    let mut n = 0u64;
    let mut got = vec![0; 4096];
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let data = pattern(4096, seed * 1_000_000 + n);
        s.write_all(&data).map_err(|e| format!("write {n}: {e}"))?;
        s.read_exact(&mut got).map_err(|e| format!("read {n}: {e}"))?;
        if got != data {
            return Err(format!("chunk {n} differs"));
        }
        streamed.fetch_add(data.len() as u64, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(5)); // a steady trickle, not a flood
    }
    s.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).map_err(|e| format!("read to close: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last chunk", rest.len()));
    }
    Ok(())
}
