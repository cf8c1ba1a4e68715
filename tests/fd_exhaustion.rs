//! Running out of file descriptors: accept fails with EMFILE, the acceptor backs
//! off without spinning (CPU stays near idle), logs rate-limited, and serves new
//! clients as soon as descriptors free up, and counts its back-offs in the stats.
//! The server is the echo example in a child process with a low `RLIMIT_NOFILE`.

mod util;

use std::time::{Duration, Instant};

use util::example;
use util::*;

#[test]
fn descriptor_exhaustion_is_survived_without_spinning() {
    survives_exhaustion("round-robin");
}

#[test]
fn reuse_port_reactors_back_off_the_same_way() {
    survives_exhaustion("reuseport");
}

fn survives_exhaustion(distribution: &str) {
    let server = example::start_with(
        "ulimit -n 40 &&",
        &[
            "--reactors",
            "1",
            "--max-conns",
            "1000",
            "--stats-interval",
            "0.2",
            "--distribution",
            distribution,
        ],
    );

    // Far more clients than the child has descriptors for.
    let clients: Vec<_> = (0..80).map(|_| connect(server.addr)).collect();
    let mut seen = Vec::new();
    let first_warning = server.wait_line("an accept back-off warning", &mut seen, |l| l.contains("accept failed"));
    assert!(first_warning.contains("Too many open files"), "{first_warning}");
    // The stats table counts the back-offs.
    server.wait_line("a stats table counting back-offs", &mut seen, |l| {
        l.strip_prefix("accept back-offs: ").is_some_and(|n| n != "0")
    });

    // Exhausted, with connections waiting in the backlog: the acceptor must sleep
    // between retries, not spin. A spinning thread would burn ~100 ticks per second.
    let window = Duration::from_secs(1);
    let before = server.cpu_ticks();
    let start = Instant::now();
    std::thread::sleep(window); // the measurement window, not synchronisation
    let used = server.cpu_ticks() - before;
    let elapsed_ticks = start.elapsed().as_secs_f64() * 100.0;
    assert!(
        (used as f64) < elapsed_ticks * 0.1,
        "server used {used} ticks of CPU in {elapsed_ticks:.0}"
    );

    // Descriptors free up: new clients are served again.
    drop(clients);
    let fresh = connect(server.addr);
    assert_eq!(roundtrip(&fresh, b"back in business"), b"back in business");
    drop(fresh);

    server.signal("-TERM");
    let (code, lines) = server.finish();
    assert_eq!(code, 0, "{lines:?}");
    // One warning per few seconds, never one per failed accept.
    let warnings = 1 + lines.iter().filter(|l| l.contains("accept failed")).count();
    assert!(warnings <= 2, "{warnings} accept warnings: {lines:?}");
    let accepted = example::exit_value(&lines, 0, "accepted");
    assert!(accepted >= 81, "every client was eventually accepted: {accepted}");
}
