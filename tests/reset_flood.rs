//! A flood of connections that reset mid-request leaves no slab entry and no
//! descriptor behind, and a client served throughout sees no effect.

mod util;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use socket2::SockRef;
use util::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn resets_leak_nothing_and_do_not_disturb_others() {
    const FLOOD: usize = 400;
    let server = echo_server(2);
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let baseline = open_fds();

    // A client served all through the flood, checking every byte.
    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let s = connect(addr);
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let data = pattern(10_000, rounds);
                assert!(roundtrip(&s, &data) == data, "bystander round {rounds} corrupted");
                rounds += 1;
            }
            rounds
        })
    };

    let flooders: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..FLOOD / 4 {
                    let mut s = connect(addr);
                    // Half a request, then a reset (SO_LINGER 0).
                    let _ = s.write_all(&pattern(1000 + i, t));
                    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                }
            })
        })
        .collect();
    for f in flooders {
        f.join().unwrap();
    }
    wait_for("every reset connection to be accepted", || {
        handle.stats().total().accepted == FLOOD as u64 + 1
    });
    stop.store(true, Ordering::Relaxed);
    let rounds = bystander.join().expect("the bystander saw only correct echoes");
    assert!(rounds > 0);

    wait_for("every connection to be closed", || handle.stats().total().active == 0);
    let total = handle.stats().total();
    assert_eq!(total.closed, total.accepted);
    wait_for("descriptors back to the baseline", || open_fds() <= baseline);

    // Normal service afterwards.
    let after = connect(addr);
    assert_eq!(roundtrip(&after, b"all clear"), b"all clear");
}
