//! Byte-exact echo: many concurrent clients, payloads from 1 byte to several MiB.

mod util;

use std::io::{Read, Write};
use std::thread;

use util::*;

#[test]
fn many_concurrent_clients_get_every_byte_back() {
    let server = echo_server(2);
    let addr = server.local_addrs()[0];
    let sizes = [1, 2, 7, 100, 1460, 4096, 65_535, 65_536, 65_537, 300_000, 1 << 20];
    let clients: Vec<_> = (0..16u64)
        .map(|c| {
            thread::spawn(move || {
                let stream = connect(addr);
                for (i, &size) in sizes.iter().enumerate() {
                    let data = pattern(size, c * 100 + i as u64);
                    assert!(
                        roundtrip(&stream, &data) == data,
                        "client {c}: {size}-byte payload differs"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let report = server.shutdown(DEADLINE).unwrap();
    let total = report.stats.total();
    let per_client: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert_eq!(total.accepted, 16);
    assert_eq!(total.bytes_in, 16 * per_client);
    assert_eq!(total.bytes_out, 16 * per_client);
}

#[test]
fn several_mebibytes_in_one_go() {
    let server = echo_server(2);
    let stream = connect(server.local_addrs()[0]);
    let data = pattern(8 << 20, 42);
    assert!(roundtrip(&stream, &data) == data, "8 MiB payload differs");
}

#[test]
fn zero_bytes_and_pipelined_small_writes() {
    let server = echo_server(1);
    let mut stream = connect(server.local_addrs()[0]);
    // Many tiny writes back to back: the server sees them merged or split in any
    // way, and must return exactly the concatenation.
    let mut expect = Vec::new();
    for i in 0..2000u32 {
        let msg = [0u8, (i % 251) as u8, 0, 255];
        stream.write_all(&msg).unwrap();
        expect.extend_from_slice(&msg);
    }
    let mut got = vec![0; expect.len()];
    stream.read_exact(&mut got).unwrap();
    assert!(got == expect);
}
