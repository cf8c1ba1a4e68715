//! The token layout: what each `mio::Token` names, for the reactors and the
//! acceptor alike, defined once.
//!
//! ```text
//! 0 ..  LISTENER_BASE      open connections: the token is the slab slot
//! LISTENER_BASE ..         listeners (the acceptor's, or a reactor's own in
//!                          reuse-port mode): base + listener index
//! PENDING_BASE ..          outbound connects in progress: base + pending slot
//! usize::MAX               the waker
//! ```
//!
//! Slab slots are bounded by the descriptor limit, far below `LISTENER_BASE`, so a
//! connection's token can never be read as anything else.

use mio::Token;

/// The waker's token: every poll has one waker, at the top of the range.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Tokens from here up to [`PENDING_BASE`] name listeners.
const LISTENER_BASE: usize = 1 << (usize::BITS - 3);

/// Tokens from here up (below the waker) name outbound connects in progress.
const PENDING_BASE: usize = 1 << (usize::BITS - 2);

/// What a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Waker,
    /// Listener `i`.
    Listener(usize),
    /// The outbound connect in pending slot `i`.
    Pending(usize),
    /// The connection in slab slot `i`.
    Conn(usize),
}

impl Source {
    pub(crate) fn of(token: Token) -> Self {
        match token {
            WAKER => Source::Waker,
            Token(t) if t >= PENDING_BASE => Source::Pending(t - PENDING_BASE),
            Token(t) if t >= LISTENER_BASE => Source::Listener(t - LISTENER_BASE),
            Token(slot) => Source::Conn(slot),
        }
    }
}

pub(crate) fn listener(i: usize) -> Token {
    Token(LISTENER_BASE + i)
}

pub(crate) fn pending(slot: usize) -> Token {
    Token(PENDING_BASE + slot)
}

pub(crate) fn conn(slot: usize) -> Token {
    debug_assert!(slot < LISTENER_BASE, "slab slots stay below the listener range");
    Token(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back() {
        for i in [0, 1, 1000] {
            assert_eq!(Source::of(conn(i)), Source::Conn(i));
            assert_eq!(Source::of(listener(i)), Source::Listener(i));
            assert_eq!(Source::of(pending(i)), Source::Pending(i));
        }
        assert_eq!(Source::of(WAKER), Source::Waker);
    }
}
