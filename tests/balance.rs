//! Round-robin placement: R reactors, K·R connections, K each, checked through the
//! stats and through the reactor thread each connection was opened on.

mod util;

use std::collections::HashMap;

use util::*;

#[test]
fn round_robin_gives_each_reactor_the_same_share() {
    const R: usize = 3;
    const K: usize = 5;
    let (server, rx) = recorder_server(R);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let clients: Vec<_> = (0..K * R).map(|_| connect(addr)).collect();
    wait_for("every connection to be accepted", || {
        handle.stats().total().accepted == (K * R) as u64
    });

    let stats = handle.stats();
    for r in &stats.reactors {
        assert_eq!(
            r.accepted, K as u64,
            "reactor {} accepted {}, stats:\n{stats}",
            r.reactor, r.accepted
        );
        assert_eq!(r.active, K as u64);
    }
    // Each connection was opened on the thread named for its reactor.
    let mut per_reactor = HashMap::new();
    for _ in 0..K * R {
        match next(&rx) {
            Seen::Open(id, thread) => {
                assert_eq!(thread, format!("coreloop-reactor-{}", id.reactor()));
                *per_reactor.entry(id.reactor()).or_insert(0) += 1;
            }
            other => panic!("expected an open, got {other:?}"),
        }
    }
    assert!(per_reactor.values().all(|&n| n == K), "{per_reactor:?}");
    drop(clients);
}
