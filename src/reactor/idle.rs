//! The idle timeout: one wheel entry per connection, re-armed lazily.
//!
//! Reads and writes only record the tick of a connection's last activity; when its
//! entry falls due the reactor closes it if it has been quiet for the timeout, or
//! re-arms it at last activity + timeout. A busy connection costs one re-arm per
//! timeout period, nothing per message.

use std::mem;
use std::time::{Duration, Instant};

use crate::handler::{CloseReason, Handler};
use crate::timer::{TimerWheel, deadline_after};

use super::Reactor;

/// Ticks per idle timeout: the timeout's resolution is 1/8 of it.
const IDLE_TICKS: u32 = 8;

#[derive(Debug)]
pub(super) struct Idle {
    wheel: TimerWheel<(usize, u64)>,
    /// The wheel's tick: 1/8 of the timeout, so a connection closes between the
    /// timeout and the timeout + 1/8.
    tick: Duration,
    timeout_ticks: u64,
    start: Instant,
    expired: Vec<(usize, u64)>,
}

impl Idle {
    pub(super) fn new(timeout: Duration) -> Self {
        let tick = (timeout / IDLE_TICKS).max(Duration::from_millis(1));
        Self {
            wheel: TimerWheel::new(64),
            tick,
            timeout_ticks: u64::try_from(timeout.as_nanos().div_ceil(tick.as_nanos())).unwrap_or(u64::MAX),
            start: Instant::now(),
            expired: Vec::new(),
        }
    }

    pub(super) fn tick_at(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.start).as_nanos() / self.tick.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Arms connection `(key, generation)`, active at tick `now`.
    pub(super) fn arm(&mut self, now: u64, key: usize, generation: u64) {
        self.wheel
            .insert(now.saturating_add(self.timeout_ticks), (key, generation));
    }

    /// When the tick after `now` begins, if any connection is armed.
    pub(super) fn next_deadline(&self, now: u64) -> Option<Instant> {
        if self.wheel.is_empty() {
            return None;
        }
        let ticks = u128::from(now) + 1;
        let after =
            u64::try_from(self.tick.as_nanos().saturating_mul(ticks)).map_or(Duration::MAX, Duration::from_nanos);
        Some(deadline_after(self.start, after))
    }

    /// Drops entries of connections that are gone once they outnumber the live
    /// ones (`alive`), so the wheel is bounded by open connections, not by the
    /// connection rate × timeout.
    pub(super) fn compact(&mut self, alive: usize, live: impl FnMut(&(usize, u64)) -> bool) {
        if self.wheel.len() > 2 * alive + 64 {
            self.wheel.retain(live);
        }
    }
}

impl<H: Handler> Reactor<H> {
    /// Closes connections idle for the timeout; re-arms the others at their last
    /// activity + timeout. Runs when the wheel's tick moves, not per event.
    pub(super) fn expire_idle(&mut self) {
        let now = self.core.now_tick;
        let Some(idle) = &mut self.core.idle else { return };
        idle.wheel.advance(now, &mut idle.expired);
        if idle.expired.is_empty() {
            return;
        }
        let mut expired = mem::take(&mut idle.expired);
        for &(key, generation) in &expired {
            let Some(c) = self.conns.get(key).filter(|c| c.generation == generation) else {
                continue; // closed since it was armed
            };
            let last_active = c.last_active;
            let Some(idle) = &mut self.core.idle else { break };
            if last_active.saturating_add(idle.timeout_ticks) > now {
                idle.arm(last_active, key, generation);
            } else {
                self.close(key, CloseReason::IdleTimeout);
            }
        }
        expired.clear();
        if let Some(idle) = &mut self.core.idle {
            idle.expired = expired; // keep the allocation
        }
    }
}
