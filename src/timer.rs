//! Time in the reactor: deadlines that saturate instead of overflowing, a FIFO
//! queue for deadlines that all share one duration, and a coarse hashed timer wheel.
//!
//! - [`deadline_after`]: `now + d` for any `Duration`, `Duration::MAX` included.
//! - [`Deadlines`]: items armed with one fixed duration (the linger time, the
//!   connect timeout) fall due in the order they were armed, so a queue is enough:
//!   O(1) to arm, O(1) per item due.
//! - [`TimerWheel`]: inserting and expiring are O(1) per entry; nothing is done per
//!   I/O event. The reactor uses it for idle timeouts the lazy way: each connection
//!   has one entry; reads and writes only record the tick of last activity on the
//!   connection, and when the entry expires the reactor either closes the
//!   connection or re-inserts it at last activity + timeout. So a busy connection
//!   costs one re-insert per timeout period, not one per message.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far "never" is: a deadline beyond what an `Instant` can hold is put this far
/// ahead instead (about a century), which no server outlives.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, saturating: a duration too long for an `Instant` (such as
/// `Duration::MAX`) means a deadline a century away, never a panic.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Items due at deadlines that arrive in the order they are armed (one duration
/// for all), e.g. `(slot, generation)` pairs. Items whose owner went away meanwhile
/// are skipped by the caller when they fall due, and compacted once they
/// outnumber the live ones, so the queue stays bounded by what is live.
#[derive(Debug)]
pub(crate) struct Deadlines<T> {
    queue: VecDeque<(Instant, T)>,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self { queue: VecDeque::new() }
    }
}

impl<T> Deadlines<T> {
    /// Arms `item` for `at`, which must not be earlier than any armed before.
    pub(crate) fn push(&mut self, at: Instant, item: T) {
        debug_assert!(self.queue.back().is_none_or(|&(last, _)| last <= at));
        self.queue.push_back((at, item));
    }

    /// The earliest deadline armed.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.front().map(|&(at, _)| at)
    }

    /// Takes the next item whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.queue.front() {
            Some(&(at, _)) if at <= now => self.queue.pop_front().map(|(_, item)| item),
            _ => None,
        }
    }

    /// Drops the items for which `live` is false once the queue holds more than
    /// twice `alive` (+ 64): amortized O(1) per item, and the queue never outgrows
    /// what is live by more than that.
    pub(crate) fn compact(&mut self, alive: usize, mut live: impl FnMut(&T) -> bool) {
        if self.queue.len() > 2 * alive + 64 {
            self.queue.retain(|(_, item)| live(item));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

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
    fn deadlines_saturate() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn deadlines_fall_due_in_order_and_compact() {
        let t0 = Instant::now();
        let mut q = Deadlines::default();
        for i in 0..100u32 {
            q.push(t0 + Duration::from_millis(u64::from(i)), i);
        }
        assert_eq!(q.pop_due(t0), Some(0));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.next(), Some(t0 + Duration::from_millis(1)));
        q.compact(10, |&i| i % 2 == 0); // 99 > 2 * 10 + 64: compacted
        let mut due = Vec::new();
        while let Some(i) = q.pop_due(t0 + Duration::from_secs(1)) {
            due.push(i);
        }
        assert_eq!(due, (2..100).step_by(2).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn past_ticks_fire_at_the_next_advance() {
        let mut w = TimerWheel::new(4);
        assert!(advance(&mut w, 10).is_empty());
        w.insert(3, 7);
        assert_eq!(advance(&mut w, 11), [7]);
    }
}
