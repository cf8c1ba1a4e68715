//! The connection cap under concurrent admission: with `Distribution::ReusePort`
//! every reactor accepts on its own listener, so several threads reserve room under
//! the cap at the same time. The cap must hold exactly, as the server's own
//! counters and the sockets it holds open both show while a burst is on.

mod util;

use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use bytes::BytesMut;
use coreloop::{Context, Distribution, Handler, Server};
use util::{localhost, wait_for};

/// Keeps every connection open and ignores its input.
struct Hold;

impl Handler for Hold {
    type Conn = ();

    fn on_open(&mut self, _cx: &mut Context<'_>) {}

    fn on_data(&mut self, _conn: &mut (), _cx: &mut Context<'_>, input: &mut BytesMut) {
        input.clear();
    }
}

/// Descriptors this process holds for connections accepted on `port`: sockets
/// among its open descriptors that `/proc/net/tcp` lists as established with local
/// port `port`. Counted by inode, since the table is read in pieces while it
/// changes and may list an entry twice; a connection still waiting in the accept
/// queue has no inode (and no descriptor) yet.
fn accepted_sockets(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    let server_side: HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&local) && f[3] == "01" && f[9] != "0").then_some(f[9])
        })
        .collect();
    let held: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    held.iter().filter(|inode| server_side.contains(inode.as_str())).count() as u64
}

const REACTORS: usize = 4;
const CAP: usize = 50;
const CLIENTS: usize = 400;
const ROUNDS: usize = 20;

#[test]
fn reuse_port_reactors_never_admit_more_than_the_cap() {
    let server = Server::builder()
        .reactors(REACTORS)
        .distribution(Distribution::ReusePort)
        .max_connections(CAP)
        .bind(localhost())
        .start(|_| Hold)
        .unwrap();
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let (max_active, max_sockets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let sampler = {
            let (stop, handle) = (Arc::clone(&stop), handle.clone());
            let (max_active, max_sockets) = (Arc::clone(&max_active), Arc::clone(&max_sockets));
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    max_active.fetch_max(handle.stats().total().active, Ordering::Relaxed);
                    max_sockets.fetch_max(accepted_sockets(addr.port()), Ordering::Relaxed);
                }
            })
        };
        // 400 connects at once from 8 threads: the kernel completes every one
        // (the backlog holds them) and spreads them over the four listeners.
        let clients: Vec<TcpStream> = (0..8)
            .map(|_| {
                thread::spawn(move || {
                    (0..CLIENTS / 8)
                        .map(|_| TcpStream::connect(addr).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        wait_for("the server to fill up to the cap", || {
            handle.stats().total().active >= CAP as u64 && accepted_sockets(addr.port()) >= CAP as u64
        });
        stop.store(true, Ordering::Release);
        sampler.join().unwrap();
        let (active, sockets) = (max_active.load(Ordering::Relaxed), max_sockets.load(Ordering::Relaxed));
        assert!(
            active <= CAP as u64 && sockets <= CAP as u64,
            "round {round}: the server held {active} connections by its stats and {sockets} accepted sockets; the cap is {CAP}"
        );
        drop(clients);
        wait_for("every connection to close", || {
            handle.stats().total().active == 0 && accepted_sockets(addr.port()) == 0
        });
    }
    server.shutdown(std::time::Duration::from_secs(5)).unwrap();
}
