//! # Writing a protocol
//!
//! This chapter builds a protocol server the way `examples/kv/` does — a Redis
//! protocol (RESP2) key-value and publish/subscribe server that `redis-cli`,
//! `redis-benchmark` and Redis client libraries use unmodified — one concern at a
//! time: framing, replies, flow control, timers, fan-out, limits. The snippets
//! here compile; the example is the whole of it (`examples/kv/handler.rs` is the
//! handler, `resp.rs` the framing, `store.rs` the keyspace).
//!
//! ## The shape
//!
//! One [`Handler`](crate::Handler) per reactor, made by the factory given to
//! [`Builder::start`](crate::Builder::start); state shared by every reactor goes
//! in an `Arc` the factory clones, state of one connection in
//! [`Handler::Conn`](crate::Handler::Conn), state of one reactor in the handler
//! itself. kv shares its keyspace (sharded, one lock per shard, so reactors rarely
//! wait on each other), keeps each reactor's subscribers in its handler, and
//! each connection's parse state and subscriptions in `Conn`.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::BytesMut;
//! use coreloop::{Context, Handler, Server};
//!
//! struct Shared { /* the keyspace */ }
//!
//! struct Kv {
//!     shared: Arc<Shared>,
//! }
//!
//! #[derive(Default)]
//! struct Client {
//!     // the request being parsed, subscriptions, the client's name …
//! }
//!
//! impl Handler for Kv {
//!     type Conn = Client;
//!     fn on_open(&mut self, _cx: &mut Context<'_>) -> Client {
//!         Client::default()
//!     }
//!     fn on_data(&mut self, _c: &mut Client, _cx: &mut Context<'_>, input: &mut BytesMut) {
//!         input.clear();
//!     }
//! }
//!
//! # fn main() -> coreloop::Result<()> {
//! let shared = Arc::new(Shared {});
//! let server = Server::builder()
//!     .bind(([127, 0, 0, 1], 0))
//!     .start(|_reactor| Kv { shared: Arc::clone(&shared) })?;
//! # server.shutdown(std::time::Duration::from_secs(1))?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Framing with `input`
//!
//! [`on_data`](crate::Handler::on_data) receives every byte not yet consumed.
//! Take the complete frames off the front (`split_to`, `advance`) and leave a
//! partial one: it comes back with the next bytes. Bytes the reactor read land in
//! one buffer per reactor; only what the handler leaves moves into a buffer of the
//! connection's own, so an idle connection holds none.
//!
//! Parse so that a frame arriving in pieces costs linear time: remember where the
//! last attempt stopped (kv's `Request` keeps the arguments found so far as
//! ranges of `input`, which only grows at its end until the frame is taken), and
//! when a frame announces its length, wait until that many bytes are there.
//!
//! Bound every frame: kv refuses more than 1,048,576 arguments or an argument over
//! `--max-bulk` with Redis's `-ERR Protocol error: …` and closes, as Redis does;
//! [`Builder::max_input`](crate::Builder::max_input) bounds what a handler may
//! leave unconsumed, whatever it is.
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use coreloop::{Context, Handler};
//!
//! /// Lines in, `+OK` out; a line longer than 1 KiB is a protocol error.
//! struct Lines;
//!
//! impl Handler for Lines {
//!     type Conn = ();
//!     fn on_open(&mut self, _cx: &mut Context<'_>) {}
//!     fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
//!         while let Some(end) = input.iter().position(|&b| b == b'\n') {
//!             let line = input.split_to(end + 1);
//!             // … act on `line` …
//!             # let _ = line;
//!             cx.write(b"+OK\r\n");
//!         }
//!         if input.len() > 1024 {
//!             cx.write(b"-ERR Protocol error: line too long\r\n");
//!             input.clear();
//!             cx.close(); // after the error reply is written
//!         }
//!     }
//! }
//! ```
//!
//! ## Replies
//!
//! [`Context::write`](crate::Context::write) copies into the reactor's staging
//! buffer; `write!(cx, "…")` formats into it (no allocation, no trait to
//! import); [`write_bytes`](crate::Context::write_bytes) queues a `Bytes`
//! without copying it when it is large — kv answers a `GET` of a stored value
//! that way. Everything one callback writes leaves in one `write` (or `writev`)
//! call after it returns, however many replies it wrote: pipelined requests cost
//! one syscall per read, not one per request.
//!
//! ## Flow control
//!
//! Replies can be far larger than requests: 16,000 pipelined `GET big` (9 bytes
//! each) ask for 128 MB of 8 KB values. A handler that answers a whole read's
//! worth at once queues tens of megabytes for one connection. So before each
//! request, ask [`Context::is_writable`](crate::Context::is_writable), and stop —
//! leaving the rest in `input` — when it says no. The reactor stops reading the
//! connection, and calls `on_data` again with what was left, without new bytes
//! from the peer, once the output has drained to the low watermark (or at once if
//! the socket took it all). No request is lost or answered twice, and the
//! connection holds about a high watermark of output: kv serves that client in
//! 388 KiB of extra memory (`tests/kv.rs`).
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use coreloop::{Context, Handler};
//!
//! /// Each request byte asks for a large reply.
//! struct Big;
//!
//! impl Handler for Big {
//!     type Conn = ();
//!     fn on_open(&mut self, _cx: &mut Context<'_>) {}
//!     fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
//!         while !input.is_empty() && cx.is_writable() {
//!             input.advance(1);
//!             cx.write(&[b'x'; 8192]);
//!         }
//!         // Whatever is left comes back once the output has drained.
//!     }
//! }
//! ```
//!
//! Output a handler produces on its own — a stream, messages to subscribers —
//! follows the same rule: produce while `is_writable()`, and go on in
//! [`on_writable`](crate::Handler::on_writable). Output queued for a peer that
//! never reads is bounded by [`Builder::max_output`](crate::Builder::max_output):
//! past it the connection is closed (kv: 32 MiB, then a subscriber that does not
//! read is dropped, as Redis's output buffer limit does).
//!
//! ## Timers
//!
//! A connection's timer ([`Context::set_timer`](crate::Context::set_timer),
//! [`on_timer`](crate::Handler::on_timer)) serves request timeouts, heartbeats,
//! retries; it is cancelled when the connection closes and never fires for
//! another one. A reactor's timer ([`ReactorContext::set_timer`](crate::ReactorContext::set_timer),
//! [`on_reactor_timer`](crate::Handler::on_reactor_timer)) serves periodic jobs;
//! arm the first in [`on_start`](crate::Handler::on_start). kv expires keys the
//! way Redis does: every read checks the key's time, and each reactor sweeps its
//! share of the keyspace every 100 ms, so a key is never seen after its time and
//! an expired key unread does not stay in memory.
//!
//! ```
//! use std::time::Duration;
//! use bytes::BytesMut;
//! use coreloop::{Context, Handler, ReactorContext};
//!
//! struct Sweeper;
//!
//! impl Handler for Sweeper {
//!     type Conn = ();
//!     fn on_start(&mut self, cx: &mut ReactorContext<'_, ()>) {
//!         let _ = cx.set_timer(Duration::from_millis(100), 0);
//!     }
//!     fn on_reactor_timer(&mut self, cx: &mut ReactorContext<'_, ()>, _tag: u64) {
//!         // … delete this reactor's share of the expired keys …
//!         let _ = cx.set_timer(Duration::from_millis(100), 0); // again
//!     }
//!     fn on_open(&mut self, _cx: &mut Context<'_>) {}
//!     fn on_data(&mut self, _: &mut (), _: &mut Context<'_>, input: &mut BytesMut) {
//!         input.clear();
//!     }
//! }
//! ```
//!
//! Timers are kept in one wheel per reactor with the idle timeouts and the
//! linger and connect deadlines: arming and cancelling are O(1), and armed timers
//! cost nothing per message.
//!
//! ## Fan-out through reactor messages
//!
//! A `PUBLISH` must reach subscribers on every reactor. Sending to each with
//! [`Handle::send`](crate::Handle::send) crosses threads once per subscriber.
//! Instead, keep each reactor's subscribers in its handler, encode the message
//! once, and [`Handle::broadcast`](crate::Handle::broadcast) it: one message per
//! reactor, whose [`on_reactor_message`](crate::Handler::on_reactor_message)
//! writes it to its own subscribers through the
//! [`ReactorContext`](crate::ReactorContext) — sharing the encoded `Bytes`, not
//! copying it. A publisher's messages reach each reactor in the order it sent
//! them. The handler's message type is a type parameter of the handler
//! (`impl Handler<Msg> for Kv`): the handle takes that type and no other.
//! (BENCHMARKS.md measures the two ways with 10,000 subscribers.)
//!
//! ## Limits, last words and closing
//!
//! When a limit closes a connection — unconsumed input over `max_input`, the
//! idle timeout — [`on_limit`](crate::Handler::on_limit) may say why (kv answers
//! `-ERR Protocol error: request too large`), and the connection closes
//! gracefully: what was written is flushed, our FIN sent, and a peer still sending
//! is read and dropped for the linger time rather than reset. A protocol error is
//! the handler's own limit: write the error, clear `input`, call
//! [`close`](crate::Context::close). `QUIT` is the same without the error.
//!
//! ## Testing against real clients
//!
//! kv's tests talk to it through the `redis` client crate, drive `redis-cli`
//! and `redis-benchmark` as a user would, and compare its answers to malformed
//! requests byte for byte with `redis-server`'s (`tests/kv.rs`,
//! `tests/peers.rs`). A test whose program is missing is reported as ignored,
//! with the reason.
