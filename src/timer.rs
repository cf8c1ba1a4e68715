//! Time in the reactor: one timer wheel per reactor holds every deadline — idle
//! timeouts, linger, connect timeouts, and the handler's own timers — and
//! deadlines saturate instead of overflowing.
//!
//! # The wheel
//!
//! A hierarchical timing wheel of 1 ms ticks: six levels of 64 slots, level `L`
//! slot spanning 64^L ms, so it reaches 64^6 ms (about two years) ahead; a timer
//! further out waits in the last level and is put back, never fired early. An
//! entry sits in the level of the highest 6-bit group in which its tick differs
//! from the wheel's current tick, and moves down a level each time its slot comes
//! up, so it is touched at most six times however long it waits.
//!
//! Entries live in a slab and each slot is an intrusive doubly-linked list of slab
//! keys, so arming and cancelling are O(1) with no allocation once the slab has
//! grown; a 64-bit occupancy mask per level finds the next expiration in a few
//! instructions (it decides how long the reactor may sleep). Entries can also
//! belong to an owner's list ([`TimerList`], one per connection), so that every
//! timer of a connection is cancelled when it closes: a dead timer never lingers
//! in the wheel or counts against the limit.
//!
//! Nothing here is done per I/O event: the reactor reads the clock once per loop
//! turn, and only while timers are armed.
//!
//! The file passes 400 lines with its unit tests, which need the wheel's private
//! state; the wheel itself is under 500.

use std::time::{Duration, Instant};

use slab::Slab;

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

/// Whole milliseconds in `d`, rounded down (no 128-bit arithmetic).
fn floor_ms(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

/// Milliseconds in `d`, rounded up.
pub(crate) fn ceil_ms(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)))
}

/// A reactor's clock: milliseconds since the reactor started, the wheel's tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { start: Instant::now() }
    }

    /// The current tick, rounded down: a timer due at or before it has expired.
    pub(crate) fn now(&self) -> u64 {
        floor_ms(self.start.elapsed())
    }

    /// The current tick (rounded down), and the first tick at or after `after`
    /// from now (rounded up: a timer due at it never fires early), from one
    /// clock read.
    pub(crate) fn now_and_after(&self, after: Duration) -> (u64, u64) {
        let elapsed = self.start.elapsed();
        (floor_ms(elapsed), ceil_ms(elapsed.saturating_add(after)))
    }
}

/// Names one armed timer (see [`Context::set_timer`](crate::Context::set_timer));
/// once it has fired or been cancelled, the id names nothing, even after its slot
/// in the reactor's wheel is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    generation: u32,
}

const NIL: u32 = u32::MAX;

/// The timers one owner (a connection) holds, so that all can be cancelled
/// together: the head of a list threaded through the wheel's entries.
#[derive(Debug)]
pub(crate) struct TimerList(u32);

impl Default for TimerList {
    fn default() -> Self {
        TimerList(NIL)
    }
}

#[cfg(test)]
impl TimerList {
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == NIL
    }
}

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// How far ahead the wheel reaches (63 slots of the last level, about two
/// years); later entries wait at the far end and are put back when it comes up.
/// Not 64 slots: an entry placed a full turn ahead would land in the slot the
/// wheel is on, and look due.
const MAX_SPAN: u64 = ((SLOTS - 1) as u64) << (SLOT_BITS as usize * (LEVELS - 1));
/// `Entry::level` of an entry that has fired and is no longer in any slot.
const FIRED: u8 = u8::MAX;

#[derive(Debug)]
struct Entry<T> {
    when: u64,
    item: T,
    generation: u32,
    level: u8,
    slot: u8,
    /// Neighbours in the slot's list.
    prev: u32,
    next: u32,
    /// Neighbours in the owner's list; `owned` tells whether there is one.
    owned: bool,
    owner_prev: u32,
    owner_next: u32,
}

#[derive(Debug)]
struct Level {
    heads: [u32; SLOTS],
    /// Bit `s` set: slot `s` holds entries.
    occupied: u64,
}

/// The hierarchical timer wheel (see the module docs).
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    entries: Slab<Entry<T>>,
    levels: [Level; LEVELS],
    /// The tick the wheel has advanced to: every entry due at or before it has
    /// been handed out.
    elapsed: u64,
    /// No slot holding entries begins before this tick (`u64::MAX`: none holds
    /// any). Exact after `expire`, lowered by `insert`, left alone by `remove`
    /// (a bound that is too early costs one empty `expire`, never a missed
    /// timer): the reactor's per-turn check and poll timeout read it in O(1).
    earliest: u64,
    next_generation: u32,
}

/// The level an entry due at `when` belongs in, seen from `elapsed`.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize
}

impl<T> Wheel<T> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Slab::new(),
            levels: std::array::from_fn(|_| Level {
                heads: [NIL; SLOTS],
                occupied: 0,
            }),
            elapsed: 0,
            earliest: u64::MAX,
            next_generation: 0,
        }
    }

    /// Timers armed (or fired and not yet taken).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Arms `item` for tick `when` (a tick already past fires at the next
    /// `expire`), in `owner`'s list if given.
    pub(crate) fn insert(&mut self, when: u64, item: T, owner: Option<&mut TimerList>) -> TimerId {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let owned = owner.is_some();
        let key = self.entries.insert(Entry {
            when,
            item,
            generation,
            level: FIRED,
            slot: 0,
            prev: NIL,
            next: NIL,
            owned,
            owner_prev: NIL,
            owner_next: NIL,
        });
        let key = u32::try_from(key).expect("fewer than 2^32 timers: the builder bounds them");
        self.link(key);
        self.earliest = self.earliest.min(when.max(self.elapsed));
        if let Some(owner) = owner {
            let head = owner.0;
            let e = &mut self.entries[key as usize];
            e.owner_next = head;
            if head != NIL {
                self.entries[head as usize].owner_prev = key;
            }
            owner.0 = key;
        }
        TimerId { key, generation }
    }

    /// The item of a timer still armed, or fired and not yet taken.
    pub(crate) fn get(&self, id: TimerId) -> Option<&T> {
        self.entries
            .get(id.key as usize)
            .filter(|e| e.generation == id.generation)
            .map(|e| &e.item)
    }

    /// Removes a timer — armed, or fired and not yet taken — and returns its
    /// item; `owner` must be the list it was armed in, if any.
    pub(crate) fn remove(&mut self, id: TimerId, owner: Option<&mut TimerList>) -> Option<T> {
        let e = self.entries.get(id.key as usize)?;
        if e.generation != id.generation {
            return None;
        }
        debug_assert_eq!(
            e.owned,
            owner.is_some(),
            "a timer is removed with the list it was armed in"
        );
        self.unlink(id.key);
        if let Some(owner) = owner {
            self.unlink_owner(id.key, owner);
        }
        Some(self.entries.remove(id.key as usize).item)
    }

    /// Removes every timer in `owner`'s list, handing each item to `removed`.
    pub(crate) fn remove_all(&mut self, owner: &mut TimerList, mut removed: impl FnMut(T)) {
        let mut key = owner.0;
        while key != NIL {
            let next = self.entries[key as usize].owner_next;
            self.unlink(key);
            removed(self.entries.remove(key as usize).item);
            key = next;
        }
        owner.0 = NIL;
    }

    /// A tick before which the wheel has nothing to hand out (the exact next
    /// expiration, or earlier), in O(1).
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        (self.earliest != u64::MAX).then_some(self.earliest)
    }

    /// `(level, slot, the tick it begins)` of the next slot holding entries.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let pos = slot_for(self.elapsed, level);
            // Slots from `pos` on are in this turn of the level; one before it can
            // only hold a far-future entry of the last level (a later turn).
            let rotated = l.occupied.rotate_right(pos as u32);
            let slot = (pos + rotated.trailing_zeros() as usize) % SLOTS;
            let span = 1u64 << shift;
            let turn = span << SLOT_BITS;
            let base = self.elapsed & !(turn - 1);
            let mut deadline = base + slot as u64 * span;
            if slot < pos {
                deadline = deadline.saturating_add(turn);
            }
            return Some((level, slot, deadline.max(self.elapsed)));
        }
        None
    }

    /// Hands out (into `fired`) every timer due at or before tick `now`, in
    /// order of their slots. A fired timer stays readable ([`get`](Self::get))
    /// until it is [`remove`](Self::remove)d.
    pub(crate) fn expire(&mut self, now: u64, fired: &mut Vec<TimerId>) {
        while let Some((level, slot, deadline)) = self.next_slot() {
            if deadline > now {
                break;
            }
            let l = &mut self.levels[level];
            let mut key = std::mem::replace(&mut l.heads[slot], NIL);
            l.occupied &= !(1 << slot);
            self.elapsed = deadline;
            while key != NIL {
                let e = &mut self.entries[key as usize];
                let next = e.next;
                e.prev = NIL;
                e.next = NIL;
                e.level = FIRED;
                if e.when <= now {
                    fired.push(TimerId {
                        key,
                        generation: e.generation,
                    });
                } else {
                    self.link(key); // due later: into a lower level
                }
                key = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
        self.earliest = self.next_slot().map_or(u64::MAX, |(_, _, deadline)| deadline);
    }

    /// Puts entry `key` into the slot its tick belongs to.
    fn link(&mut self, key: u32) {
        let elapsed = self.elapsed;
        let e = &mut self.entries[key as usize];
        let place = e.when.clamp(elapsed, elapsed.saturating_add(MAX_SPAN));
        let level = level_for(elapsed, place);
        let slot = slot_for(place, level);
        let head = self.levels[level].heads[slot];
        e.level = level as u8;
        e.slot = slot as u8;
        e.prev = NIL;
        e.next = head;
        if head != NIL {
            self.entries[head as usize].prev = key;
        }
        let l = &mut self.levels[level];
        l.heads[slot] = key;
        l.occupied |= 1 << slot;
    }

    /// Takes entry `key` out of its slot, if it is in one.
    fn unlink(&mut self, key: u32) {
        let e = &mut self.entries[key as usize];
        if e.level == FIRED {
            return;
        }
        let (level, slot, prev, next) = (e.level as usize, e.slot as usize, e.prev, e.next);
        e.level = FIRED;
        if prev == NIL {
            let l = &mut self.levels[level];
            l.heads[slot] = next;
            if next == NIL {
                l.occupied &= !(1 << slot);
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn unlink_owner(&mut self, key: u32, owner: &mut TimerList) {
        let e = &self.entries[key as usize];
        let (prev, next) = (e.owner_prev, e.owner_next);
        if prev == NIL {
            owner.0 = next;
        } else {
            self.entries[prev as usize].owner_next = next;
        }
        if next != NIL {
            self.entries[next as usize].owner_prev = prev;
        }
    }
}

/// What a reactor's timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Connection `slot`'s idle check (re-armed lazily at last activity + timeout).
    Idle { slot: usize, generation: u64 },
    /// Connection `slot` gives up waiting for its peer's FIN.
    Linger { slot: usize, generation: u64 },
    /// Connection `slot`'s preamble (its PROXY header) is late.
    Preamble { slot: usize, generation: u64 },
    /// The handler's timer on connection `slot`.
    Conn { slot: usize, generation: u64, tag: u64 },
    /// The outbound connect in pending slot `slot` times out.
    Connect { slot: usize, serial: u64 },
    /// The handler's reactor timer.
    Reactor { tag: u64 },
}

impl Due {
    /// Set by the handler (and counted against its limit), not by the reactor.
    fn is_user(&self) -> bool {
        matches!(self, Due::Conn { .. } | Due::Reactor { .. })
    }
}

/// Why a timer was not armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooMany {
    pub(crate) max: usize,
}

/// A reactor's timers: the wheel, its clock, and the count of the handler's own
/// timers against their limit. The reactor's timers (idle, linger, connect) are
/// bounded by its connections and never refused.
#[derive(Debug)]
pub(crate) struct Timers {
    pub(crate) wheel: Wheel<Due>,
    pub(crate) clock: Clock,
    /// The tick read at the start of this loop turn (when timers are armed).
    pub(crate) now: u64,
    user: usize,
    max_user: usize,
}

impl Timers {
    pub(crate) fn new(max_user: usize) -> Self {
        Self {
            wheel: Wheel::new(),
            clock: Clock::new(),
            now: 0,
            user: 0,
            max_user,
        }
    }

    /// Reads the clock for this loop turn, if any timer is armed (one vDSO call,
    /// no syscall): the tick connections record as their last activity.
    pub(crate) fn read_clock(&mut self) {
        if !self.wheel.is_empty() {
            self.now = self.clock.now();
        }
    }

    /// Arms one of the reactor's own timers for `tick` (never refused).
    pub(crate) fn arm_at(&mut self, tick: u64, due: Due, owner: Option<&mut TimerList>) -> TimerId {
        self.wheel.insert(tick, due, owner)
    }

    /// Arms one of the reactor's own timers `after` from now (never refused).
    /// Reads the clock, which also brings this turn's tick up to date, so the
    /// next poll's timeout is counted from now.
    pub(crate) fn arm(&mut self, after: Duration, due: Due, owner: Option<&mut TimerList>) -> TimerId {
        let (now, tick) = self.clock.now_and_after(after);
        self.now = self.now.max(now);
        self.wheel.insert(tick, due, owner)
    }

    /// Arms one of the handler's timers `after` from now, unless its limit is
    /// reached. Never fires before `after` has passed.
    pub(crate) fn arm_user(
        &mut self,
        after: Duration,
        due: Due,
        owner: Option<&mut TimerList>,
    ) -> Result<TimerId, TooMany> {
        if self.user >= self.max_user {
            return Err(TooMany { max: self.max_user });
        }
        self.user += 1;
        Ok(self.arm(after, due, owner))
    }

    /// Removes a timer (armed, or fired and not yet taken); `owner` is the list
    /// it was armed in.
    pub(crate) fn remove(&mut self, id: TimerId, owner: Option<&mut TimerList>) -> Option<Due> {
        let due = self.wheel.remove(id, owner)?;
        if due.is_user() {
            self.user -= 1;
        }
        Some(due)
    }

    /// Removes every timer of one owner (a connection that closes).
    pub(crate) fn remove_all(&mut self, owner: &mut TimerList) {
        let user = &mut self.user;
        self.wheel.remove_all(owner, |due| {
            if due.is_user() {
                *user -= 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn expire(w: &mut Wheel<u32>, now: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        w.expire(now, &mut fired);
        let mut items: Vec<u32> = fired.into_iter().map(|id| w.remove(id, None).unwrap()).collect();
        items.sort();
        items
    }

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(ceil_ms(Duration::from_micros(1500)), 2);
        assert_eq!(floor_ms(Duration::from_micros(1500)), 1);
        assert_eq!(ceil_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn entries_fire_at_their_tick_and_not_before() {
        let mut w = Wheel::new();
        w.insert(3, 1, None);
        w.insert(5, 2, None);
        w.insert(5, 3, None);
        w.insert(70, 4, None); // level 1
        w.insert(5000, 5, None); // level 2
        assert_eq!(w.next_expiration(), Some(3));
        assert!(expire(&mut w, 2).is_empty());
        assert_eq!(expire(&mut w, 3), [1]);
        assert!(expire(&mut w, 4).is_empty());
        assert_eq!(expire(&mut w, 5), [2, 3]);
        assert!(expire(&mut w, 69).is_empty());
        assert_eq!(expire(&mut w, 70), [4]);
        assert!(expire(&mut w, 4999).is_empty());
        assert_eq!(expire(&mut w, 100_000), [5]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_ticks_fire_at_the_next_expire_and_far_ones_wait() {
        let mut w = Wheel::new();
        assert!(expire(&mut w, 10).is_empty());
        w.insert(3, 7, None);
        assert_eq!(expire(&mut w, 10), [7]);
        // Beyond the wheel's reach: held in the last level, never fired early.
        w.insert(u64::MAX, 8, None);
        let far = 1 << 40;
        w.insert(far, 9, None);
        for now in [MAX_SPAN, MAX_SPAN * 3, far - 1] {
            assert!(expire(&mut w, now).is_empty(), "at {now}");
        }
        assert_eq!(w.len(), 2);
        assert_eq!(expire(&mut w, far), [9]);
        assert_eq!(expire(&mut w, u64::MAX), [8]);
    }

    #[test]
    fn cancel_and_owner_lists() {
        let mut w = Wheel::new();
        let mut conn = TimerList::default();
        let a = w.insert(10, 1, Some(&mut conn));
        let b = w.insert(20, 2, Some(&mut conn));
        let c = w.insert(30, 3, Some(&mut conn));
        let other = w.insert(15, 4, None);
        assert_eq!(w.remove(b, Some(&mut conn)), Some(2));
        assert_eq!(w.remove(b, Some(&mut conn)), None, "a removed id names nothing");
        let mut removed = Vec::new();
        w.remove_all(&mut conn, |item| removed.push(item));
        removed.sort();
        assert_eq!(removed, [1, 3]);
        assert!(conn.is_empty());
        assert!(w.get(a).is_none() && w.get(c).is_none());
        assert_eq!(expire(&mut w, 100), [4]);
        assert!(w.get(other).is_none());
        // A reused slot does not answer to an old id.
        let d = w.insert(200, 5, None);
        assert!(w.get(a).is_none() && w.get(d) == Some(&5));
    }

    /// Random arms, cancels and advances against a model: everything due fires at
    /// the first expire at or after its tick, nothing fires early or twice.
    #[test]
    fn matches_a_model_under_random_use() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut w = Wheel::new();
        let mut model: BTreeMap<u32, (u64, TimerId)> = BTreeMap::new();
        let mut now = 0;
        for item in 0..20_000u32 {
            match rand(10) {
                0..=5 => {
                    let span = [10, 100, 5_000, 300_000, 20_000_000][rand(5) as usize];
                    let when = now + rand(span);
                    let id = w.insert(when, item, None);
                    model.insert(item, (when, id));
                }
                6 if !model.is_empty() => {
                    let pick = *model.keys().nth(rand(model.len() as u64) as usize).unwrap();
                    let (_, id) = model.remove(&pick).unwrap();
                    assert_eq!(w.remove(id, None), Some(pick));
                }
                _ => {
                    now += [1, 7, 64, 4096, 300_000][rand(5) as usize];
                    let fired = expire(&mut w, now);
                    let due: Vec<u32> = model
                        .iter()
                        .filter(|(_, (when, _))| *when <= now)
                        .map(|(&k, _)| k)
                        .collect();
                    assert_eq!(fired, due, "at tick {now}");
                    model.retain(|_, (when, _)| *when > now);
                    if let Some(next) = w.next_expiration() {
                        let earliest = model.values().map(|(when, _)| *when).min().unwrap();
                        assert!(
                            next <= earliest,
                            "next expiration {next} after the earliest timer {earliest}"
                        );
                    }
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }
}
