//! No allocation per message on the echo path: a counting global allocator
//! watches the whole process while one connection echoes thousands of messages.
//! (A test binary of its own, its tests taking turns, so no other test's
//! allocations are counted.)

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use util::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is process-wide: the tests of this binary take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn echo_many(s: &mut std::net::TcpStream, size: usize, n: usize) {
    let msg = vec![7u8; size];
    let mut back = vec![0u8; size];
    for _ in 0..n {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
    }
}

#[test]
fn echoing_allocates_nothing_per_message() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = echo_server(1);
    let mut s = connect(server.local_addrs()[0]);
    s.set_nodelay(true).unwrap();
    for size in [64, 16 * 1024] {
        echo_many(&mut s, size, 500); // warm up: buffers reach their working size
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        echo_many(&mut s, size, 5000);
        let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
        // The client loop allocates nothing either; a handful of allocations is
        // noise from elsewhere in the process, 5000 would be one per message.
        assert!(during <= 20, "{during} allocations for 5000 echoes of {size} bytes");
    }
}

/// Replies `N: ` + the input, formatted with `write!` into the context, and
/// the input passed through a function generic over `io::Write`.
struct Numbered;

fn put(w: &mut impl std::io::Write, data: &[u8]) {
    w.write_all(data).unwrap();
}

impl coreloop::Handler for Numbered {
    type Conn = u64;

    fn on_open(&mut self, _cx: &mut coreloop::Context<'_>) -> u64 {
        0
    }

    fn on_data(&mut self, n: &mut u64, cx: &mut coreloop::Context<'_>, input: &mut bytes::BytesMut) {
        *n += 1;
        write!(cx, "{n:>6}: ");
        put(cx, input);
        input.clear();
    }
}

#[test]
fn formatted_replies_allocate_nothing_per_message() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = coreloop::Server::builder()
        .reactors(1)
        .bind(localhost())
        .start(|_| Numbered)
        .unwrap();
    let mut s = connect(server.local_addrs()[0]);
    s.set_nodelay(true).unwrap();
    let (mut back, mut expect) = ([0u8; 8 + 64], [0u8; 8]);
    let mut ask = |s: &mut std::net::TcpStream, i: u64| {
        s.write_all(&[b'q'; 64]).unwrap();
        s.read_exact(&mut back).unwrap();
        write!(&mut expect[..], "{i:>6}: ").unwrap(); // no allocation here either
        assert_eq!(back[..8], expect);
    };
    for i in 1..=500 {
        ask(&mut s, i);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 501..=5500 {
        ask(&mut s, i);
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(during <= 20, "{during} allocations for 5000 formatted replies");
}
