//! The PROXY protocol, end to end: the header is read before `on_open`, the
//! handler sees the client it names and never a byte of it, and not a byte of
//! what the client sent after it is lost — wherever the first read ends. Bad,
//! late, missing or untrusted headers close the connection before the handler
//! sees it, counted in the stats.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use bytes::BytesMut;
use coreloop::{CloseReason, Context, Handle, Handler, Listen, ProxyProtocol, Server};
use util::*;

/// Greets each connection with what it knows of its client, then echoes.
struct Greeter {
    events: Sender<String>,
}

impl Handler for Greeter {
    type Conn = ();

    fn on_open(&mut self, cx: &mut Context<'_>) {
        let (peer, id) = (cx.peer_addr().clone(), cx.id());
        let via = cx.proxy().map(|p| {
            format!(
                " v{} via {} authority {:?} id {:?}",
                p.version(),
                p.balancer(),
                p.authority(),
                p.unique_id().map(String::from_utf8_lossy)
            )
        });
        writeln!(cx, "hello {peer}{}", via.unwrap_or_default());
        let _ = self.events.send(format!("open {id}"));
    }

    fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
        cx.write(input);
        input.clear();
    }

    fn on_close(&mut self, _: (), cx: &mut Context<'_>, why: CloseReason) {
        let _ = self.events.send(format!("close {} {why}", cx.id()));
    }
}

fn greeter(listen: Listen) -> (Server, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .preamble_timeout(Duration::from_millis(300))
        .listen(listen)
        .start(move |_| Greeter { events: tx.clone() })
        .unwrap();
    (server, rx)
}

fn v1() -> Vec<u8> {
    b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n".to_vec()
}

/// HAProxy's `send-proxy-v2` header for 192.0.2.7:5555 → 198.51.100.1:443, with
/// an authority (TLV 0x02) and a unique id (TLV 0x05).
fn v2() -> Vec<u8> {
    let mut tlvs = Vec::new();
    for (kind, value) in [(0x02u8, &b"api.example.com"[..]), (0x05, b"req-1")] {
        tlvs.push(kind);
        tlvs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        tlvs.extend_from_slice(value);
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1]);
    h.extend_from_slice(&5555u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h.extend_from_slice(&tlvs);
    h
}

/// One line, read a byte at a time: nothing after it is taken from the socket.
fn read_line(mut s: &TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        s.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Writes `first`, waits until the server has read it (its `bytes_in`), then
/// writes `rest`: the server's first read ends exactly at the cut.
fn send_in_two(handle: &Handle, s: &mut TcpStream, first: &[u8], rest: &[u8]) {
    let before = handle.stats().total().bytes_in;
    s.write_all(first).unwrap();
    if !first.is_empty() {
        wait_for("the first piece to be read", || {
            handle.stats().total().bytes_in >= before + first.len() as u64
        });
    }
    s.write_all(rest).unwrap();
}

#[test]
fn every_split_of_header_and_first_payload_loses_nothing() {
    let payload = b"first bytes of the client\n";
    for (version, header) in [(1, v1()), (2, v2())] {
        let (server, _events) = greeter(Listen::tcp(localhost()).proxy_protocol(ProxyProtocol::Required));
        let handle = server.handle();
        let whole = [header.clone(), payload.to_vec()].concat();
        for cut in 0..=whole.len() {
            let mut s = connect(server.local_addrs()[0]);
            s.set_nodelay(true).unwrap();
            send_in_two(&handle, &mut s, &whole[..cut], &whole[cut..]);
            let greeting = read_line(&s);
            assert!(
                greeting.starts_with(&format!("hello 192.0.2.7:5555 v{version} via 127.0.0.1:")),
                "cut {cut}: {greeting}"
            );
            let mut echo = vec![0u8; payload.len()];
            (&s).read_exact(&mut echo).unwrap();
            assert_eq!(echo, payload, "v{version}, cut at {cut}");
        }
        assert_eq!(handle.stats().total().proxy_errors, 0);
    }
}

#[test]
fn the_handler_sees_the_tlvs_and_a_health_check_keeps_the_socket_peer() {
    let (server, _events) = greeter(Listen::tcp(localhost()).proxy_protocol(ProxyProtocol::Required));
    let mut s = connect(server.local_addrs()[0]);
    s.write_all(&v2()).unwrap();
    let greeting = read_line(&s);
    assert!(
        greeting.ends_with("authority Some(\"api.example.com\") id Some(\"req-1\")\n"),
        "{greeting}"
    );
    // Version 2 LOCAL (what a balancer's health check sends): no address, the
    // connection's own peer stands.
    let mut check = connect(server.local_addrs()[0]);
    check.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00").unwrap();
    let local = check.local_addr().unwrap();
    assert!(read_line(&check).starts_with(&format!("hello {local} v2 via {local}")));
    // Version 1 UNKNOWN, likewise.
    let mut unknown = connect(server.local_addrs()[0]);
    unknown.write_all(b"PROXY UNKNOWN\r\n").unwrap();
    let local = unknown.local_addr().unwrap();
    assert!(read_line(&unknown).starts_with(&format!("hello {local} v1")));
}

/// Each refused connection: the client sees the connection end and no byte;
/// the handler never hears of it; the stats count it.
fn assert_refused(server: &Server, events: &mpsc::Receiver<String>, send: &[u8], refused_so_far: u64) {
    let mut s = connect(server.local_addrs()[0]);
    let _ = s.write_all(send);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got); // end of stream, or a reset
    assert!(
        got.is_empty(),
        "{:?} got {:?}",
        String::from_utf8_lossy(send),
        String::from_utf8_lossy(&got)
    );
    let handle = server.handle();
    wait_for("the refusal to be counted", || {
        handle.stats().total().proxy_errors == refused_so_far
    });
    assert!(events.try_recv().is_err(), "the handler saw nothing");
}

#[test]
fn required_mode_refuses_missing_malformed_oversized_and_late_headers() {
    let (server, events) = greeter(Listen::tcp(localhost()).proxy_protocol(ProxyProtocol::Required));
    // A client speaking directly, without a header.
    assert_refused(&server, &events, b"GET / HTTP/1.1\r\n\r\n", 1);
    assert_refused(&server, &events, b"PROXY TCP4 not an address\r\n", 2);
    let mut oversized = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    oversized.extend_from_slice(&60_000u16.to_be_bytes());
    assert_refused(&server, &events, &oversized, 3);
    // Half a header, then nothing: closed at the preamble deadline (300 ms).
    assert_refused(&server, &events, &v1()[..10], 4);
    assert_refused(&server, &events, b"", 5);
    let stats = server.shutdown(Duration::from_secs(5)).unwrap().stats.total();
    assert_eq!((stats.accepted, stats.closed, stats.proxy_errors), (5, 5, 5));
}

#[test]
fn untrusted_peers_cannot_claim_an_address() {
    let elsewhere = ["10.0.0.0/8".parse().unwrap()];
    // Required: refused.
    let (server, events) = greeter(
        Listen::tcp(localhost())
            .proxy_protocol(ProxyProtocol::Required)
            .trusted_proxies(elsewhere),
    );
    assert_refused(&server, &events, &v1(), 1);
    // Optional: the "header" is the client's own data; its address is its own.
    let (server, _events) = greeter(
        Listen::tcp(localhost())
            .proxy_protocol(ProxyProtocol::Optional)
            .trusted_proxies(elsewhere),
    );
    let mut s = connect(server.local_addrs()[0]);
    let local = s.local_addr().unwrap();
    s.write_all(&v1()).unwrap();
    assert_eq!(read_line(&s), format!("hello {local}\n"));
    let mut echo = vec![0u8; v1().len()];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, v1());
}

#[test]
fn optional_mode_takes_a_header_or_none_and_off_mode_never_looks() {
    let (server, _events) = greeter(Listen::tcp(localhost()).proxy_protocol(ProxyProtocol::Optional));
    let mut with = connect(server.local_addrs()[0]);
    with.write_all(&[v1(), b"after\n".to_vec()].concat()).unwrap();
    assert!(read_line(&with).starts_with("hello 192.0.2.7:5555 v1"));
    assert_eq!(read_line(&with), "after\n");
    let mut without = connect(server.local_addrs()[0]);
    let local = without.local_addr().unwrap();
    without.write_all(b"plain data\n").unwrap();
    assert_eq!(read_line(&without), format!("hello {local}\n"));
    assert_eq!(read_line(&without), "plain data\n");
    // A client that sends nothing is opened without a header at the deadline
    // (a server-first protocol still works, a preamble deadline late).
    let silent = connect(server.local_addrs()[0]);
    assert_eq!(read_line(&silent), format!("hello {}\n", silent.local_addr().unwrap()));

    let (off, _events) = greeter(Listen::tcp(localhost()));
    let mut s = connect(off.local_addrs()[0]);
    let local = s.local_addr().unwrap();
    assert_eq!(
        read_line(&s),
        format!("hello {local}\n"),
        "greeted at once: no preamble"
    );
    s.write_all(&v1()).unwrap();
    let mut echo = vec![0u8; v1().len()];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, v1(), "with the protocol off a header is data");
}
