//! The keyspace, shared by every reactor: string values in shards, each a map
//! behind its own lock, so reactors rarely wait on each other.
//!
//! Expiry is exact to the reader and bounded in memory, as in Redis: a key read
//! after its time is gone (checked on every access), and each reactor sweeps its
//! share of the shards on a reactor timer, deleting keys whose time has come from
//! an index ordered by expiry time. Memory is accounted per entry; over the
//! limit, commands that would add data are refused (`-OOM`).

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Shards of the keyspace: enough that two reactors seldom want the same one.
const SHARDS: usize = 64;

/// What an entry costs beyond its key and value bytes (map slot, allocation
/// headers), for the memory limit.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Option<Instant>,
}

/// Keys are hashed with foldhash, seeded per process (a client cannot choose
/// keys that collide without knowing the seed), several times faster than the
/// standard SipHash on short keys.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Bytes, Entry, Hasher>,
    /// Keys with an expiry time, in expiry order.
    expiring: BTreeSet<(Instant, Bytes)>,
}

/// How `SET` treats an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// `NX`: only if absent.
    IfAbsent,
    /// `XX`: only if present.
    IfPresent,
}

/// Writes refused because the keyspace is over its memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// Why an `INCR` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrError {
    NotAnInteger,
    Overflow,
    OutOfMemory,
}

/// A key's remaining life, for `TTL`/`PTTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    NoKey,
    Forever,
    Left(Duration),
}

#[derive(Debug)]
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a key's shard (its own seed: the maps inside hash with theirs).
    pick: Hasher,
    used: AtomicUsize,
    /// Bytes the keyspace may hold; 0: no limit.
    maxmemory: usize,
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl Shard {
    /// The live entry for `key`, deleting it if its time has come.
    fn live(&mut self, key: &[u8], now: Instant, used: &AtomicUsize) -> Option<&mut Entry> {
        let expired = matches!(self.map.get(key), Some(Entry { expires: Some(at), .. }) if *at <= now);
        if expired {
            self.remove(key, used);
            return None;
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &[u8], used: &AtomicUsize) -> bool {
        let Some((k, e)) = self.map.remove_entry(key) else {
            return false;
        };
        if let Some(at) = e.expires {
            self.expiring.remove(&(at, k.clone()));
        }
        used.fetch_sub(cost(&k, &e.value), Ordering::Relaxed);
        true
    }

    fn set_expiry(&mut self, key: &[u8], expires: Option<Instant>) {
        let Some((k, e)) = self.map.get_key_value(key) else {
            return;
        };
        let (k, old) = (k.clone(), e.expires);
        if let Some(at) = old {
            self.expiring.remove(&(at, k.clone()));
        }
        if let Some(at) = expires {
            self.expiring.insert((at, k.clone()));
        }
        if let Some(e) = self.map.get_mut(&k) {
            e.expires = expires;
        }
    }
}

impl Store {
    pub fn new(maxmemory: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            pick: Hasher::default(),
            used: AtomicUsize::new(0),
            maxmemory,
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        self.lock(self.pick.hash_one(key) as usize % SHARDS)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether commands that add data are refused now (`-OOM`).
    pub fn over_limit(&self) -> bool {
        self.maxmemory > 0 && self.used.load(Ordering::Relaxed) > self.maxmemory
    }

    /// Bytes accounted to the keyspace.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Hands the value of `key` (if any) to `read`, under the shard's lock: a
    /// reply is written from it without taking a reference to it.
    pub fn read<R>(&self, key: &[u8], now: Instant, read: impl FnOnce(Option<&Bytes>) -> R) -> R {
        let mut s = self.shard(key);
        read(s.live(key, now, &self.used).map(|e| &e.value))
    }

    #[cfg(test)]
    pub fn get(&self, key: &[u8], now: Instant) -> Option<Bytes> {
        self.read(key, now, |v| v.cloned())
    }

    /// `SET`: stores `value` (with an expiry time, or keeping the key's), if
    /// `cond` allows. Returns whether it was stored.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires: Option<Instant>,
        cond: Condition,
        now: Instant,
    ) -> Result<bool, OutOfMemory> {
        if self.over_limit() {
            return Err(OutOfMemory);
        }
        let mut s = self.shard(key);
        let present = s.live(key, now, &self.used).is_some();
        match (cond, present) {
            (Condition::IfAbsent, true) | (Condition::IfPresent, false) => return Ok(false),
            _ => {}
        }
        s.remove(key, &self.used);
        let key = Bytes::copy_from_slice(key);
        self.used.fetch_add(cost(&key, value), Ordering::Relaxed);
        let value = Bytes::copy_from_slice(value);
        s.map.insert(key.clone(), Entry { value, expires: None });
        if expires.is_some() {
            s.set_expiry(&key, expires);
        }
        Ok(true)
    }

    /// Deletes each key; returns how many existed.
    pub fn del<'a>(&self, keys: impl Iterator<Item = &'a [u8]>, now: Instant) -> i64 {
        keys.filter(|key| {
            let mut s = self.shard(key);
            s.live(key, now, &self.used).is_some() && s.remove(key, &self.used)
        })
        .count() as i64
    }

    /// Counts the keys that exist (a key named twice counts twice, as in Redis).
    pub fn exists<'a>(&self, keys: impl Iterator<Item = &'a [u8]>, now: Instant) -> i64 {
        keys.filter(|key| self.shard(key).live(key, now, &self.used).is_some())
            .count() as i64
    }

    /// `INCRBY`: adds `delta` to the integer at `key` (0 if absent), keeping
    /// its expiry time.
    pub fn incr_by(&self, key: &[u8], delta: i64, now: Instant) -> Result<i64, IncrError> {
        if self.over_limit() {
            return Err(IncrError::OutOfMemory);
        }
        let mut s = self.shard(key);
        let current = match s.live(key, now, &self.used) {
            Some(e) => crate::resp::parse_i64(&e.value).ok_or(IncrError::NotAnInteger)?,
            None => 0,
        };
        let next = current.checked_add(delta).ok_or(IncrError::Overflow)?;
        let value = Bytes::from(next.to_string());
        match s.map.get_mut(key) {
            Some(e) => {
                let grown = value.len() as isize - e.value.len() as isize;
                if grown >= 0 {
                    self.used.fetch_add(grown as usize, Ordering::Relaxed);
                } else {
                    self.used.fetch_sub((-grown) as usize, Ordering::Relaxed);
                }
                e.value = value;
            }
            None => {
                self.used.fetch_add(cost(key, &value), Ordering::Relaxed);
                s.map
                    .insert(Bytes::copy_from_slice(key), Entry { value, expires: None });
            }
        }
        Ok(next)
    }

    /// Sets (or with `None` removes) the expiry time of an existing key;
    /// returns whether the key exists. An expiry time already past deletes it.
    pub fn expire(&self, key: &[u8], at: Option<Instant>, now: Instant) -> bool {
        let mut s = self.shard(key);
        if s.live(key, now, &self.used).is_none() {
            return false;
        }
        match at {
            Some(at) if at <= now => {
                s.remove(key, &self.used);
            }
            _ => s.set_expiry(key, at),
        }
        true
    }

    /// `PERSIST`: removes the expiry time; whether there was one.
    pub fn persist(&self, key: &[u8], now: Instant) -> bool {
        let mut s = self.shard(key);
        let had = matches!(s.live(key, now, &self.used), Some(Entry { expires: Some(_), .. }));
        if had {
            s.set_expiry(key, None);
        }
        had
    }

    pub fn ttl(&self, key: &[u8], now: Instant) -> Ttl {
        match self.shard(key).live(key, now, &self.used) {
            None => Ttl::NoKey,
            Some(Entry { expires: None, .. }) => Ttl::Forever,
            Some(Entry { expires: Some(at), .. }) => Ttl::Left(at.saturating_duration_since(now)),
        }
    }

    /// Keys in the keyspace (some may have expired and not been swept yet, as in
    /// Redis).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).map.len()).sum()
    }

    pub fn clear(&self) {
        for i in 0..SHARDS {
            let mut s = self.lock(i);
            s.map.clear();
            s.expiring.clear();
        }
        self.used.store(0, Ordering::Relaxed);
    }

    /// Deletes keys whose time has come, in shards `first, first + step, …`, at
    /// most `budget` per shard (the rest wait for the next sweep). Returns how
    /// many were deleted.
    pub fn sweep(&self, first: usize, step: usize, budget: usize, now: Instant) -> usize {
        let mut deleted = 0;
        for i in (first..SHARDS).step_by(step.max(1)) {
            let mut s = self.lock(i);
            for _ in 0..budget {
                let Some((at, key)) = s.expiring.first().cloned() else {
                    break;
                };
                if at > now {
                    break;
                }
                s.remove(&key, &self.used);
                deleted += 1;
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_exact_and_swept() {
        let store = Store::new(0);
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(100);
        assert!(store.set(b"k", b"v", Some(later), Condition::Always, t0).unwrap());
        assert_eq!(
            store.get(b"k", later - Duration::from_nanos(1)).as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(store.get(b"k", later), None, "gone at its time, not after");
        assert!(store.set(b"a", b"1", Some(later), Condition::Always, t0).unwrap());
        assert_eq!(store.sweep(0, 1, 100, later), 1);
        assert_eq!(store.len(), 0);
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn conditions_counters_and_the_memory_limit() {
        let store = Store::new(300);
        let now = Instant::now();
        assert!(store.set(b"k", b"1", None, Condition::Always, now).unwrap());
        assert!(!store.set(b"k", b"2", None, Condition::IfAbsent, now).unwrap());
        assert!(!store.set(b"x", b"2", None, Condition::IfPresent, now).unwrap());
        assert_eq!(store.incr_by(b"k", 41, now), Ok(42));
        assert_eq!(store.incr_by(b"k", i64::MAX, now), Err(IncrError::Overflow));
        assert!(store.set(b"big", &[0; 200], None, Condition::Always, now).unwrap());
        assert_eq!(store.set(b"more", b"x", None, Condition::Always, now), Err(OutOfMemory));
        assert_eq!(store.del([&b"big"[..]].into_iter(), now), 1);
        assert!(store.set(b"more", b"x", None, Condition::Always, now).unwrap());
    }
}
