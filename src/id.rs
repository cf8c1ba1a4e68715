//! Connection identity.
//!
//! A [`ConnId`] names one connection for its whole life and never another: it pairs
//! the slab slot with a generation drawn from a per-reactor counter, so an id kept
//! after its connection closed misses instead of reaching whoever reuses the slot.

use std::fmt;

/// The identity of one connection: reactor index, slab slot and generation.
///
/// `ConnId`s are cheap to copy and safe to keep: once the connection closes, every
/// use of its id misses (the generation no longer matches), even after the slot is
/// reused by a new connection.
///
/// # Examples
///
/// ```
/// # fn show(id: coreloop::ConnId) {
/// println!("connection {id} lives on reactor {}", id.reactor());
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    reactor: u32,
    slot: u32,
    generation: u64,
}

impl ConnId {
    pub(crate) fn new(reactor: usize, slot: usize, generation: u64) -> Self {
        // Both fit: reactors are capped by the builder, slots by the descriptor limit.
        Self {
            reactor: u32::try_from(reactor).expect("reactor index is capped by the builder"),
            slot: u32::try_from(slot).expect("slab slots are bounded by file descriptors"),
            generation,
        }
    }

    /// The index of the reactor that owns this connection.
    pub fn reactor(&self) -> usize {
        self.reactor as usize
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.reactor, self.slot, self.generation)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_slot_other_generation_is_another_connection() {
        let old = ConnId::new(1, 7, 3);
        let new = ConnId::new(1, 7, 4);
        assert_ne!(old, new);
        assert_eq!(old.to_string(), "1:7#3");
    }
}
