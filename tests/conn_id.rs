//! Stale connection ids: once a connection closes, its id misses — even when a new
//! connection reuses its slab slot.

mod util;

use std::collections::HashSet;

use coreloop::CloseReason;
use util::*;

#[test]
fn a_stale_id_never_reaches_the_connection_reusing_its_slot() {
    let (server, rx) = recorder_server(1);
    let handle = server.handle();
    let addr = server.local_addrs()[0];

    let (old, old_id) = open(addr, &rx);
    drop(old);
    assert_eq!(next(&rx), Seen::Eof(old_id));
    assert_eq!(next(&rx), Seen::Close(old_id, CloseReason::PeerClosed));

    // One reactor, an empty slab: the new connection takes the same slot.
    let (new, new_id) = open(addr, &rx);
    assert_ne!(new_id, old_id);
    let slot = |id: coreloop::ConnId| id.to_string().split('#').next().unwrap().to_string();
    assert_eq!(slot(new_id), slot(old_id), "the test relies on slot reuse");

    // Close by the stale id, then by a marker connection's id: commands run in
    // order, so once the marker is closed the stale close has been handled.
    handle.close(old_id).unwrap();
    let (mut marker, marker_id) = open(addr, &rx);
    handle.close(marker_id).unwrap();
    assert_eq!(read_to_end(&mut marker), b"");
    drop(marker);
    assert_eq!(next(&rx), Seen::Close(marker_id, CloseReason::Local));

    // The connection in the reused slot is untouched.
    assert_eq!(roundtrip(&new, b"still mine"), b"still mine");
    assert!(rx.try_recv().is_err(), "no other callback ran");
}

#[test]
fn ids_are_unique_across_many_reuses() {
    let (server, rx) = recorder_server(1);
    let addr = server.local_addrs()[0];
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let s = connect(addr);
        let Seen::Open(id, _) = next(&rx) else {
            panic!("expected open")
        };
        assert!(seen.insert(id), "{id} was handed out twice");
        drop(s);
        assert_eq!(next(&rx), Seen::Eof(id));
        assert!(matches!(next(&rx), Seen::Close(..)));
    }
}
