//! Per-reactor counters and the snapshots read from them.
//!
//! Each reactor owns one [`Counters`] and is its only writer, so a bump is a plain
//! load and store (no locked read-modify-write on the hot path); any thread may read
//! a snapshot at any time. Values are monotonic except `active`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The live counters of one reactor. Written by that reactor's thread only.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) active: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) pauses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) proxy_errors: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_errors: AtomicU64,
    /// Connections the acceptor handed over that this reactor has taken on (its
    /// `Open` commands run); with the acceptor's own count of hand-overs, the
    /// connections still in flight to it. Not part of the snapshot.
    pub(crate) handed_over: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
///
/// A plain load and store: readers on other threads see either value, never a torn
/// one, and no locked instruction is spent on the per-message path.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts one from a counter that only the calling thread writes.
#[inline]
pub(crate) fn drop_one(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).saturating_sub(1), Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, reactor: usize) -> ReactorStats {
        ReactorStats {
            reactor,
            active: self.active.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            closed: self.closed.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            polls: self.polls.load(Relaxed),
            events: self.events.load(Relaxed),
            panics: self.panics.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            stale: self.stale.load(Relaxed),
            proxy_errors: self.proxy_errors.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_errors: self.tls_errors.load(Relaxed),
        }
    }
}

/// A snapshot of one reactor's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorStats {
    /// The reactor's index.
    pub reactor: usize,
    /// Connections open now.
    pub active: u64,
    /// Connections this reactor has taken on (accepted for it, or opened by it).
    pub accepted: u64,
    /// Connections this reactor has closed.
    pub closed: u64,
    /// Bytes read from its sockets.
    pub bytes_in: u64,
    /// Bytes written to its sockets.
    pub bytes_out: u64,
    /// Poll calls (loop turns).
    pub polls: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Handler callbacks that panicked.
    pub panics: u64,
    /// Times a connection's reading was paused because its output passed the high
    /// watermark.
    pub pauses: u64,
    /// Commands (`send`, `message`, `close`) addressed to connections that had
    /// already closed, or were closing, when the reactor took them; they were
    /// dropped.
    pub stale: u64,
    /// Connections closed in their PROXY preamble: the header was missing,
    /// malformed, too long, late, or sent by an untrusted peer
    /// ([`CloseReason::Proxy`](crate::CloseReason::Proxy)).
    pub proxy_errors: u64,
    /// TLS handshakes completed (feature `tls`; 0 without it).
    pub tls_handshakes: u64,
    /// Connections closed for a TLS reason — a failed, late or not-TLS
    /// handshake, a bad record, a truncation
    /// (`CloseReason::Tls`; feature `tls`, 0 without it).
    pub tls_errors: u64,
}

/// A snapshot of every reactor's counters, and the acceptor's, from
/// [`Handle::stats`](crate::Handle::stats).
///
/// Each counter is read atomically, but the snapshot as a whole is not taken at
/// one instant: under load, `accepted`, `closed` and `active` of one reactor may
/// disagree by the connections opened or closed while it was read. Once the
/// server is quiet, `accepted == closed + active` holds for every reactor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// One entry per reactor, in index order.
    pub reactors: Vec<ReactorStats>,
    /// Times accepting paused because the process or system ran out of
    /// descriptors or memory (see [`Builder::accept_backoff`](crate::Builder::accept_backoff)),
    /// by the acceptor thread or, in reuse-port mode, by any reactor.
    pub accept_backoffs: u64,
}

impl Stats {
    /// The sum over all reactors (its `reactor` field is the reactor count).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn show(stats: &coreloop::Stats) {
    /// let total = stats.total();
    /// println!("{} connections open", total.active);
    /// # }
    /// ```
    pub fn total(&self) -> ReactorStats {
        let mut t = ReactorStats {
            reactor: self.reactors.len(),
            ..ReactorStats::default()
        };
        for r in &self.reactors {
            t.active += r.active;
            t.accepted += r.accepted;
            t.closed += r.closed;
            t.bytes_in += r.bytes_in;
            t.bytes_out += r.bytes_out;
            t.polls += r.polls;
            t.events += r.events;
            t.panics += r.panics;
            t.pauses += r.pauses;
            t.stale += r.stale;
            t.proxy_errors += r.proxy_errors;
            t.tls_handshakes += r.tls_handshakes;
            t.tls_errors += r.tls_errors;
        }
        t
    }
}

impl fmt::Display for Stats {
    /// A compact table, one row per reactor and a total row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>7} {:>8} {:>10} {:>10} {:>14} {:>14} {:>10} {:>10} {:>7} {:>7}",
            "reactor", "active", "accepted", "closed", "bytes_in", "bytes_out", "polls", "events", "panics", "pauses"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, r: &ReactorStats| {
            writeln!(
                f,
                "{:>7} {:>8} {:>10} {:>10} {:>14} {:>14} {:>10} {:>10} {:>7} {:>7}",
                name, r.active, r.accepted, r.closed, r.bytes_in, r.bytes_out, r.polls, r.events, r.panics, r.pauses
            )
        };
        for r in &self.reactors {
            row(f, &r.reactor.to_string(), r)?;
        }
        row(f, "total", &self.total())?;
        writeln!(f, "accept back-offs: {}", self.accept_backoffs)?;
        let total = self.total();
        writeln!(f, "PROXY header errors: {}", total.proxy_errors)?;
        if total.tls_handshakes + total.tls_errors > 0 {
            writeln!(
                f,
                "TLS handshakes: {}, TLS errors: {}",
                total.tls_handshakes, total.tls_errors
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_and_total() {
        let a = Counters::default();
        let b = Counters::default();
        bump(&a.accepted, 3);
        bump(&b.accepted, 2);
        bump(&a.active, 1);
        drop_one(&a.active);
        drop_one(&a.active); // saturates, never wraps
        let stats = Stats {
            reactors: vec![a.snapshot(0), b.snapshot(1)],
            accept_backoffs: 7,
        };
        assert_eq!(stats.total().accepted, 5);
        assert_eq!(stats.total().active, 0);
        let table = stats.to_string();
        assert!(
            table.contains("total") && table.contains("accept back-offs: 7"),
            "{table}"
        );
    }
}
