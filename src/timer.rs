//! A coarse hashed timer wheel, in ticks.
//!
//! Inserting and expiring are O(1) per entry; nothing is done per I/O event. The
//! reactor uses it for idle timeouts the lazy way: each connection has one entry;
//! reads and writes only record the tick of last activity on the connection, and
//! when the entry expires the reactor either closes the connection or re-inserts
//! it at last activity + timeout. So a busy connection costs one re-insert per
//! timeout period, not one per message.

#[derive(Debug)]
pub(crate) struct TimerWheel<T> {
    /// Entries `(due tick, item)`, in slot `due % slots.len()`.
    slots: Box<[Vec<(u64, T)>]>,
    /// The last tick expired: every entry due at or before it has been handed out.
    current: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    pub(crate) fn new(slots: usize) -> Self {
        assert!(slots > 0, "a timer wheel needs at least one slot");
        Self {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            current: 0,
            len: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` for tick `due`; a tick already past fires at the next advance.
    pub(crate) fn insert(&mut self, due: u64, item: T) {
        let due = due.max(self.current + 1);
        let n = self.slots.len() as u64;
        self.slots[(due % n) as usize].push((due, item));
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps only the entries for which `keep` holds (drops dead ones early).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for slot in self.slots.iter_mut() {
            slot.retain(|(_, item)| keep(item));
        }
        self.len = self.slots.iter().map(Vec::len).sum();
    }

    /// Moves every entry due at or before `now` into `expired`. Visits each slot at
    /// most once, however far `now` has moved.
    pub(crate) fn advance(&mut self, now: u64, expired: &mut Vec<T>) {
        if now <= self.current {
            return;
        }
        let n = self.slots.len() as u64;
        let steps = (now - self.current).min(n);
        for t in self.current + 1..=self.current + steps {
            let slot = &mut self.slots[(t % n) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= now {
                    expired.push(slot.swap_remove(i).1);
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
        }
        self.current = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn entries_fire_at_their_tick_and_not_before() {
        let mut w = TimerWheel::new(8);
        w.insert(3, 1);
        w.insert(5, 2);
        w.insert(5, 3);
        assert!(advance(&mut w, 2).is_empty());
        assert_eq!(advance(&mut w, 3), [1]);
        assert!(advance(&mut w, 4).is_empty());
        assert_eq!(advance(&mut w, 5), [2, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_turn_wait_for_their_round() {
        let mut w = TimerWheel::new(4);
        w.insert(2, 1);
        w.insert(6, 2); // same slot as 2, one turn later
        w.insert(21, 3);
        assert_eq!(advance(&mut w, 2), [1]);
        assert!(advance(&mut w, 5).is_empty());
        assert_eq!(advance(&mut w, 6), [2]);
        // A jump far past many turns visits each slot once and finds what is due.
        assert_eq!(advance(&mut w, 100), [3]);
    }

    #[test]
    fn retain_drops_entries_before_they_are_due() {
        let mut w = TimerWheel::new(4);
        for i in 0..10 {
            w.insert(1 + i as u64, i);
        }
        w.retain(|&i| i % 2 == 0);
        assert_eq!(w.len(), 5);
        assert_eq!(advance(&mut w, 20), [0, 2, 4, 6, 8]);
    }

    #[test]
    fn past_ticks_fire_at_the_next_advance() {
        let mut w = TimerWheel::new(4);
        assert!(advance(&mut w, 10).is_empty());
        w.insert(3, 7);
        assert_eq!(advance(&mut w, 11), [7]);
    }
}
