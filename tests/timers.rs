//! Timers: per connection (arm, cancel, the callback with the connection's state
//! and a `Context`) and per reactor (periodic jobs armed at start); never for a
//! closed connection or one reusing its slot; bounded per reactor with a clear
//! error; never early, and late by about a tick (10,000 timers measured).

mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use coreloop::{CloseReason, ConnId, Context, Handler, ReactorContext, Server, TimerId};
use util::*;

#[derive(Debug)]
enum Ev {
    Fired(ConnId, u64),
    Closed(ConnId),
    Ticks(Vec<Instant>),
    Lateness(Vec<Duration>),
}

/// Per connection: its timers by tag, and how many fired.
#[derive(Default)]
struct Timed {
    timers: HashMap<u64, TimerId>,
    fired: u64,
}

/// Lines: `arm MS TAG`, `cancel TAG`. Replies `armed TAG`, `refused: ERROR`,
/// `cancelled TAG BOOL`; a timer writes `fired TAG (N so far)` to its connection.
/// Reactor message `(count, max_ms)` arms that many reactor timers (tags 1000..)
/// spread over `max_ms` and reports their lateness; `on_start` arms a periodic
/// job (tag 1) that ticks five times.
struct Clockwork {
    tx: Sender<Ev>,
    ticks: Vec<Instant>,
    /// Lateness run: (armed at + delay) per timer, and what was measured.
    due: Vec<Instant>,
    late: Vec<Duration>,
}

const PERIOD: Duration = Duration::from_millis(20);

impl Handler<(u64, u64)> for Clockwork {
    type Conn = Timed;

    fn on_start(&mut self, cx: &mut ReactorContext<'_, Timed, (u64, u64)>) {
        cx.set_timer(PERIOD, 1).unwrap();
    }

    fn on_open(&mut self, _cx: &mut Context<'_, (u64, u64)>) -> Timed {
        Timed::default()
    }

    fn on_data(&mut self, conn: &mut Timed, cx: &mut Context<'_, (u64, u64)>, input: &mut BytesMut) {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line = input.split_to(end + 1);
            let words: Vec<&str> = std::str::from_utf8(&line).unwrap().split_whitespace().collect();
            match words[..] {
                ["arm", ms, tag] => {
                    let tag: u64 = tag.parse().unwrap();
                    match cx.set_timer(Duration::from_millis(ms.parse().unwrap()), tag) {
                        Ok(id) => {
                            conn.timers.insert(tag, id);
                            cx.write(format!("armed {tag}\n").as_bytes());
                        }
                        Err(e) => cx.write(format!("refused: {e}\n").as_bytes()),
                    }
                }
                ["cancel", tag] => {
                    let tag: u64 = tag.parse().unwrap();
                    let done = conn.timers.get(&tag).is_some_and(|&id| cx.cancel_timer(id));
                    cx.write(format!("cancelled {tag} {done}\n").as_bytes());
                }
                _ => panic!("unknown line {line:?}"),
            }
        }
    }

    fn on_timer(&mut self, conn: &mut Timed, cx: &mut Context<'_, (u64, u64)>, tag: u64) {
        conn.fired += 1;
        conn.timers.remove(&tag);
        cx.write(format!("fired {tag} ({} so far)\n", conn.fired).as_bytes());
        let _ = self.tx.send(Ev::Fired(cx.id(), tag));
    }

    fn on_reactor_message(&mut self, cx: &mut ReactorContext<'_, Timed, (u64, u64)>, (count, max_ms): (u64, u64)) {
        self.late.clear();
        self.due.clear();
        for i in 0..count {
            let after = Duration::from_micros((i * 7919) % (max_ms * 1000) + 1);
            self.due.push(Instant::now() + after);
            cx.set_timer(after, 1000 + i).unwrap();
        }
    }

    fn on_reactor_timer(&mut self, cx: &mut ReactorContext<'_, Timed, (u64, u64)>, tag: u64) {
        let now = Instant::now();
        if tag == 1 {
            self.ticks.push(now);
            if self.ticks.len() < 5 {
                cx.set_timer(PERIOD, 1).unwrap();
            } else {
                let _ = self.tx.send(Ev::Ticks(std::mem::take(&mut self.ticks)));
            }
            return;
        }
        let due = self.due[(tag - 1000) as usize];
        // `checked_duration_since`: `None` would mean it fired early.
        let late = now
            .checked_duration_since(due)
            .unwrap_or_else(|| panic!("timer {tag} fired {:?} early", due - now));
        self.late.push(late);
        if self.late.len() == self.due.len() {
            let _ = self.tx.send(Ev::Lateness(std::mem::take(&mut self.late)));
        }
    }

    fn on_close(&mut self, _conn: Timed, cx: &mut Context<'_, (u64, u64)>, _why: CloseReason) {
        let _ = self.tx.send(Ev::Closed(cx.id()));
    }
}

fn server(max_timers: usize) -> (Server<(u64, u64)>, Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .reactors(1)
        .max_timers(max_timers)
        .bind(localhost())
        .start(move |_| Clockwork {
            tx: tx.clone(),
            ticks: Vec::new(),
            due: Vec::new(),
            late: Vec::new(),
        })
        .unwrap();
    (server, rx)
}

struct Line(BufReader<TcpStream>, TcpStream);

impl Line {
    fn open(server: &Server<(u64, u64)>) -> Self {
        let s = connect(server.local_addrs()[0]);
        Line(BufReader::new(s.try_clone().unwrap()), s)
    }
    fn say(&mut self, line: &str) -> String {
        self.1.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.hear()
    }
    fn hear(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }
}

/// Waits for the next event that is not a periodic tick report.
fn event(rx: &Receiver<Ev>) -> Ev {
    loop {
        match rx.recv_timeout(DEADLINE).expect("an event") {
            Ev::Ticks(_) => continue,
            ev => return ev,
        }
    }
}

#[test]
fn a_connection_timer_fires_after_its_time_with_its_state_and_writes() {
    let (server, _rx) = server(100);
    let mut c = Line::open(&server);
    let armed = Instant::now();
    assert_eq!(c.say("arm 50 7"), "armed 7");
    assert_eq!(c.say("arm 80 8"), "armed 8");
    assert_eq!(c.hear(), "fired 7 (1 so far)");
    assert!(armed.elapsed() >= Duration::from_millis(50));
    assert_eq!(c.hear(), "fired 8 (2 so far)");
    assert!(armed.elapsed() >= Duration::from_millis(80));
}

#[test]
fn a_cancelled_timer_never_fires() {
    let (server, rx) = server(100);
    let mut c = Line::open(&server);
    assert_eq!(c.say("arm 60 1"), "armed 1");
    assert_eq!(c.say("arm 120 2"), "armed 2");
    assert_eq!(c.say("cancel 1"), "cancelled 1 true");
    // Timers fire in order: once 2 has fired, 1 would have.
    assert_eq!(c.hear(), "fired 2 (1 so far)");
    assert!(matches!(event(&rx), Ev::Fired(_, 2)));
    assert_eq!(
        c.say("cancel 2"),
        "cancelled 2 false",
        "a fired timer cannot be cancelled"
    );
}

#[test]
fn timers_die_with_their_connection_and_never_reach_the_next_in_its_slot() {
    let (server, rx) = server(100);
    let handle = server.handle();
    let mut a = Line::open(&server);
    assert_eq!(a.say("arm 100 9"), "armed 9");
    assert_eq!(a.say("arm 100000 10"), "armed 10");
    drop(a);
    let a_id = match event(&rx) {
        Ev::Closed(id) => id,
        other => panic!("expected the close, got {other:?}"),
    };
    // The next connection takes the same slot (one reactor, nothing else open).
    let mut b = Line::open(&server);
    assert_eq!(b.say("arm 300 11"), "armed 11");
    assert_eq!(
        b.hear(),
        "fired 11 (1 so far)",
        "a's timer 9 was due first and never fired"
    );
    match event(&rx) {
        Ev::Fired(id, 11) => assert_eq!((id.reactor(), id == a_id), (0, false)),
        other => panic!("only b's timer fires, got {other:?}"),
    }
    assert_eq!(handle.stats().total().active, 1);
}

#[test]
fn the_timer_limit_is_a_clear_error_and_closing_gives_timers_back() {
    // The periodic job started in `on_start` holds one of the three.
    let (server, rx) = server(3);
    let mut a = Line::open(&server);
    assert_eq!(a.say("arm 100000 1"), "armed 1");
    assert_eq!(a.say("arm 100000 2"), "armed 2");
    assert_eq!(
        a.say("arm 100000 3"),
        "refused: reactor 0 has 3 timers armed, its limit (Builder::max_timers)"
    );
    drop(a); // its two timers are cancelled with it
    assert!(matches!(event(&rx), Ev::Closed(_)));
    let mut b = Line::open(&server);
    assert_eq!(b.say("arm 100000 4"), "armed 4");
    assert_eq!(b.say("arm 100000 5"), "armed 5");
    assert_eq!(b.say("cancel 5"), "cancelled 5 true");
    assert_eq!(b.say("arm 100000 6"), "armed 6");
}

#[test]
fn a_reactor_timer_armed_at_start_runs_a_periodic_job() {
    let (_server, rx) = server(100);
    let ticks = loop {
        match rx.recv_timeout(DEADLINE).expect("the periodic job reports") {
            Ev::Ticks(t) => break t,
            _ => continue,
        }
    };
    assert_eq!(ticks.len(), 5);
    for pair in ticks.windows(2) {
        assert!(pair[1] - pair[0] >= PERIOD, "ticks {:?} apart", pair[1] - pair[0]);
    }
}

#[test]
fn ten_thousand_timers_never_fire_early_and_are_late_by_about_a_tick() {
    let (server, rx) = server(20_000);
    server.handle().message_reactor(0, (10_000, 1000)).unwrap();
    let mut late = match event(&rx) {
        Ev::Lateness(l) => l,
        other => panic!("expected the lateness report, got {other:?}"),
    };
    assert_eq!(late.len(), 10_000);
    late.sort();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    let (p50, p99, max) = (at(0.5), at(0.99), late[late.len() - 1]);
    eprintln!("lateness of 10,000 timers over 1 s: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    // A tick is 1 ms; the reactor wakes at the tick after a timer's time.
    assert!(p50 <= Duration::from_millis(2), "p50 {p50:?}");
    assert!(
        p99 <= Duration::from_millis(10),
        "p99 {p99:?} (a busy machine may add some)"
    );
}
