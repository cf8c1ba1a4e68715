//! The three distribution strategies: each serves byte-exact echo with the
//! counters adding up; least-connections fills the emptiest reactor after closes
//! (where round-robin would keep cycling).

mod util;

use std::collections::HashMap;

use coreloop::{Distribution, Server, Stats};
use util::*;

const STRATEGIES: [Distribution; 3] = [
    Distribution::RoundRobin,
    Distribution::LeastConnections,
    Distribution::ReusePort,
];

/// Per reactor and in total: every connection taken on is either closed or open.
fn assert_adds_up(stats: &Stats) {
    for r in stats.reactors.iter().chain([&stats.total()]) {
        assert_eq!(r.accepted, r.closed + r.active, "reactor {}:\n{stats}", r.reactor);
    }
}

#[test]
fn every_strategy_serves_byte_exact_echo_and_the_stats_add_up() {
    for distribution in STRATEGIES {
        let server = Server::builder()
            .reactors(2)
            .distribution(distribution)
            .bind(localhost())
            .start(|_| Echo)
            .unwrap();
        let handle = server.handle();
        let addr = server.local_addrs()[0];
        let mut clients: Vec<_> = (0..24).map(|_| connect(addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            let data = pattern(20_000 + i, i as u64);
            assert!(roundtrip(c, &data) == data, "{distribution:?}: connection {i}");
        }
        // Close a third of them; the rest stay open.
        clients.truncate(16);
        wait_for("the closes to be seen", || handle.stats().total().closed == 8);
        let stats = handle.stats();
        assert_eq!(stats.total().accepted, 24, "{distribution:?}\n{stats}");
        assert_eq!(stats.total().active, 16, "{distribution:?}\n{stats}");
        assert_adds_up(&stats);
        assert_eq!(stats.accept_backoffs, 0);
        drop(clients);
        let report = server.shutdown(DEADLINE).unwrap();
        let stats = report.stats;
        assert_eq!(stats.total().active, 0);
        assert_adds_up(&stats);
    }
}

/// Opens `n` connections one at a time (each seen open before the next), and
/// returns them with the reactor each landed on.
fn open_n(
    addr: std::net::SocketAddr,
    rx: &std::sync::mpsc::Receiver<Seen>,
    n: usize,
) -> Vec<(std::net::TcpStream, usize)> {
    (0..n)
        .map(|_| {
            let (stream, id) = open(addr, rx);
            (stream, id.reactor())
        })
        .collect()
}

#[test]
fn least_connections_fills_the_emptiest_reactor_after_closes() {
    let (server, rx) = recorder_with(
        Server::builder()
            .reactors(3)
            .distribution(Distribution::LeastConnections)
            .bind(localhost()),
    );
    let handle = server.handle();
    let addr = server.local_addrs()[0];

    // Nine connections: three on each reactor.
    let mut conns = open_n(addr, &rx, 9);
    let mut per_reactor: HashMap<usize, usize> = HashMap::new();
    for (_, r) in &conns {
        *per_reactor.entry(*r).or_default() += 1;
    }
    assert_eq!(per_reactor, HashMap::from([(0, 3), (1, 3), (2, 3)]));

    // Close every connection of reactor 1.
    conns.retain(|(_, r)| *r != 1);
    let mut closed = 0;
    while closed < 3 {
        if let Seen::Close(id, _) = next(&rx) {
            assert_eq!(id.reactor(), 1);
            closed += 1;
        }
    }
    wait_for("reactor 1 to be empty", || handle.stats().reactors[1].active == 0);

    // The next three all go to reactor 1 (round-robin would give one to each).
    let refill = open_n(addr, &rx, 3);
    let landed: Vec<usize> = refill.iter().map(|(_, r)| *r).collect();
    assert_eq!(landed, [1, 1, 1], "stats:\n{}", handle.stats());

    // Now level again: the next three spread one per reactor.
    let more = open_n(addr, &rx, 3);
    let mut landed: Vec<usize> = more.iter().map(|(_, r)| *r).collect();
    landed.sort_unstable();
    assert_eq!(landed, [0, 1, 2]);
    // A reactor counts a connection as active once its `on_open` returns, just
    // after the test saw it open.
    wait_for("reactor 0 to count its fourth connection", || {
        handle.stats().total().active == 12
    });
    assert_adds_up(&handle.stats());
    drop((conns, refill, more));
}

#[test]
fn least_connections_spreads_a_burst_evenly() {
    // Connections arriving faster than reactors open them: the acceptor counts
    // those in flight, so a burst does not all land on the reactor that looked
    // emptiest when it began.
    let server = Server::builder()
        .reactors(2)
        .distribution(Distribution::LeastConnections)
        .bind(localhost())
        .start(|_| Echo)
        .unwrap();
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let clients: Vec<_> = (0..200).map(|_| connect(addr)).collect();
    wait_for("every connection to open", || handle.stats().total().active == 200);
    let stats = handle.stats();
    for r in &stats.reactors {
        assert_eq!(r.active, 100, "{stats}");
    }
    drop(clients);
}
