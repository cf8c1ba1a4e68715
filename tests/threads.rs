//! Threads: one acceptor and N reactors while running, none after join, none after
//! a refused configuration. (One test in this binary, so no other test's threads
//! are counted.)

mod util;

use coreloop::Server;
use util::*;

#[test]
fn threads_start_with_the_server_and_are_all_joined() {
    assert!(coreloop_threads().is_empty());

    // A refused configuration starts nothing.
    assert!(Server::builder().reactors(0).bind(localhost()).start(|_| Echo).is_err());
    assert!(coreloop_threads().is_empty(), "{:?}", coreloop_threads());

    let server = echo_server(3);
    // A new thread sets its kernel name itself as it starts: wait for all four.
    let expect = [
        "coreloop-accept",
        "coreloop-reacto",
        "coreloop-reacto",
        "coreloop-reacto",
    ];
    wait_for("one acceptor and three reactor threads", || {
        let mut names = coreloop_threads();
        names.sort();
        names == expect
    });

    server.shutdown(DEADLINE).unwrap();
    assert!(coreloop_threads().is_empty(), "{:?}", coreloop_threads());
}
