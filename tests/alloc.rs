//! No allocation per message on the echo path: a counting global allocator
//! watches the whole process while one connection echoes thousands of messages.
//! (A test binary of its own, so no other test's allocations are counted.)

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
