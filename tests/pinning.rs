//! CPU pinning: reactor i runs on the i-th CPU the process may use; with more
//! reactors than CPUs the rest run unpinned, a warning is logged, and the server
//! serves as usual.

mod util;

use std::sync::Mutex;
use std::sync::mpsc;

use bytes::BytesMut;
use coreloop::{Context, Handler, Server};
use util::*;

/// Collects coreloop's log lines.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

/// The CPUs the calling thread may run on, from `/proc/thread-self/status`.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Reports, for each connection, its reactor and the CPUs that reactor may use.
struct Where(mpsc::Sender<(usize, Vec<usize>)>);

impl Handler for Where {
    type Conn = ();
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = self.0.send((cx.reactor(), allowed_cpus()));
    }
    fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }
}

/// Starts a server with `reactors` reactors and returns each reactor's CPUs.
fn reactor_cpus(reactors: usize, pin: bool) -> Vec<Vec<usize>> {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(reactors)
        .pin_cores(pin)
        .bind(localhost())
        .start(move |_| Where(tx.clone()))
        .expect("a server with more reactors than CPUs still starts");
    let addr = server.local_addrs()[0];
    // Round-robin: one connection per reactor, each echoing.
    let clients: Vec<_> = (0..reactors).map(|_| connect(addr)).collect();
    for c in &clients {
        assert_eq!(roundtrip(c, b"pinned?"), b"pinned?");
    }
    let mut cpus = vec![Vec::new(); reactors];
    for _ in 0..reactors {
        let (r, allowed) = rx.recv_timeout(DEADLINE).unwrap();
        cpus[r] = allowed;
    }
    drop(clients);
    server.shutdown(DEADLINE).unwrap();
    cpus
}

#[test]
fn reactors_are_pinned_in_order_and_extra_ones_run_unpinned() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let mine = allowed_cpus();
    let reactors = mine.len() + 1;

    // Off by default: every reactor may run anywhere this process may.
    assert_eq!(reactor_cpus(reactors, false), vec![mine.clone(); reactors]);
    assert!(LOG.0.lock().unwrap().is_empty());

    let cpus = reactor_cpus(reactors, true);
    for (i, cpu) in mine.iter().enumerate() {
        assert_eq!(cpus[i], [*cpu], "reactor {i} is pinned to the {i}th allowed CPU");
    }
    assert_eq!(cpus[reactors - 1], mine, "the reactor without a CPU runs unpinned");
    let lines = LOG.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("pin_cores") && l.contains("run unpinned")),
        "{lines:?}"
    );
}
