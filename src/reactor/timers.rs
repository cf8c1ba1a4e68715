//! Timers falling due, and the callbacks that belong to the reactor rather than
//! to one connection.
//!
//! Once per loop turn the wheel hands out what is due (a compare, when nothing
//! is); each timer is taken out of the wheel before its callback runs, so a
//! callback may arm or cancel timers freely. Idle timeouts are checked lazily: a
//! connection's idle timer, when due, closes it only if nothing was read or
//! written since it was armed, and otherwise is re-armed from the last activity.
//!
//! A reactor-level callback gets a [`ReactorContext`]: what it writes to
//! connections is queued on them and flushed here once it returns (one `writev`
//! per connection), and the closes it asks for are started here too.

use std::mem;
use std::ops::ControlFlow::Break;

use crate::handler::Handler;
use crate::local::{ReactorContext, Touch};
use crate::reason::CloseReason;
use crate::timer::Due;

use super::{Reactor, guarded};

impl<H: Handler<M>, M: Send + 'static> Reactor<H, M> {
    /// Runs every timer due at this turn's tick.
    pub(super) fn expire_timers(&mut self) {
        let now = self.core.timers.now;
        if self.core.timers.wheel.next_expiration().is_none_or(|tick| tick > now) {
            return; // the per-turn cost of timers that are not due
        }
        let mut fired = mem::take(&mut self.core.fired);
        self.core.timers.wheel.expire(now, &mut fired);
        for id in fired.drain(..) {
            // A callback earlier in this batch may have closed a connection and
            // so cancelled this timer: then it is gone.
            let Some(&due) = self.core.timers.wheel.get(id) else {
                continue;
            };
            match due {
                Due::Reactor { tag } => {
                    self.core.timers.remove(id, None);
                    self.reactor_callback("on_reactor_timer", |h, cx| h.on_reactor_timer(cx, tag));
                }
                Due::Connect { slot, serial } => {
                    self.core.timers.remove(id, None);
                    self.connect_timed_out(slot, serial);
                }
                Due::Idle { slot, generation }
                | Due::Linger { slot, generation }
                | Due::Preamble { slot, generation }
                | Due::Conn { slot, generation, .. } => {
                    let Some(c) = self.conns.get_mut(slot).filter(|c| c.generation == generation) else {
                        debug_assert!(false, "a connection's timers are cancelled when it closes");
                        self.core.timers.wheel.remove(id, None);
                        continue;
                    };
                    self.core.timers.remove(id, Some(&mut c.timers));
                    let core = &mut self.core;
                    let verdict = match due {
                        Due::Idle { .. } => match core.idle_ms {
                            // Active since it was armed: due again at last activity + timeout.
                            Some(ms) if c.last_active.saturating_add(ms) > now => {
                                let tick = c.last_active.saturating_add(ms);
                                core.timers.arm_at(tick, due, Some(&mut c.timers));
                                continue;
                            }
                            _ if c.is_open() => core.limit(slot, c, CloseReason::IdleTimeout),
                            _ => Break(CloseReason::IdleTimeout), // stuck closing: no last words
                        },
                        Due::Preamble { .. } => {
                            if let crate::conn::Phase::Preamble(p) = &mut c.phase {
                                p.timer = None; // taken out of the wheel above
                            }
                            core.preamble_late(slot, c)
                        }
                        Due::Linger { .. } => match c.phase {
                            crate::conn::Phase::Lingering { reason } => Break(reason),
                            _ => continue,
                        },
                        Due::Conn { tag, .. } if c.is_open() => {
                            core.callback(slot, c, "on_timer", CloseReason::Local, |h, state, cx| {
                                h.on_timer(state, cx, tag)
                            })
                        }
                        _ => continue, // the handler's timer on a closing connection
                    };
                    self.settle(slot, verdict);
                }
            }
        }
        self.core.fired = fired;
    }

    /// Runs a reactor-level callback (named `name` in a panic's log line) with a
    /// [`ReactorContext`], then flushes what it wrote and starts the closes it
    /// asked for.
    pub(super) fn reactor_callback(&mut self, name: &str, f: impl FnOnce(&mut H, &mut ReactorContext<'_, H::Conn, M>)) {
        let core = &mut self.core;
        let index = core.index;
        let mut cx = ReactorContext::new(
            index,
            &mut self.conns,
            &core.handle,
            &mut core.timers,
            &mut core.touched,
            core.config.high_watermark,
        );
        let handler = &mut core.handler;
        guarded(&core.counters, name, format_args!("reactor {index}"), || {
            f(handler, &mut cx)
        });
        if !self.batching {
            self.settle_touched(); // else once the batch of commands is done
        }
    }

    /// Carries out what a reactor-level callback asked of connections: flushes
    /// what it wrote, starts the closes.
    pub(super) fn settle_touched(&mut self) {
        let mut touched = mem::take(&mut self.core.touched);
        for touch in touched.drain(..) {
            let (slot, generation) = match touch {
                Touch::Wrote { slot, generation, .. } | Touch::Close { slot, generation } => (slot, generation),
            };
            let Some(c) = self.conns.get_mut(slot).filter(|c| c.generation == generation) else {
                continue; // closed by an earlier entry
            };
            let verdict = match touch {
                Touch::Wrote { flush, .. } => {
                    c.touched = false;
                    match self.core.check_output(slot, c) {
                        // syscall: one writev, unless the socket was already full
                        // (then the writable edge will flush it)
                        std::ops::ControlFlow::Continue(()) if flush => self.core.writable(slot, c),
                        verdict => verdict,
                    }
                }
                Touch::Close { .. } => self.core.begin_close(slot, c, CloseReason::Local),
            };
            self.settle(slot, verdict);
        }
        self.core.touched = touched;
    }
}
