//! The kv example (a Redis-protocol server) as Redis clients see it: every
//! command through a Rust client library, 10,000 pipelined commands, a client
//! that pipelines 16,000 `GET`s of an 8 KB value and reads late, publish/subscribe
//! across reactors, expiry, the memory and request limits, and malformed requests
//! answered and closed as Redis answers and closes them.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Commands, Connection, RedisResult, Value};
use util::example::{Running, start_example};
use util::{DEADLINE, wait_for};

fn kv(extra: &[&str]) -> Running {
    let mut args = vec!["--addr", "127.0.0.1:0", "--reactors", "2"];
    args.extend_from_slice(extra);
    start_example("kv", &args)
}

fn client(server: &Running) -> Connection {
    let client = redis::Client::open(format!("redis://{}/", server.addr)).unwrap();
    let con = client.get_connection_with_timeout(DEADLINE).unwrap();
    con.set_read_timeout(Some(DEADLINE)).unwrap();
    con
}

fn error_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    r.expect_err("an error reply").to_string()
}

#[test]
fn every_command_through_a_client_library() {
    let server = kv(&[]);
    let mut c = client(&server);
    let ping: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(ping, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi there").query(&mut c).unwrap();
    assert_eq!(echo, "hi there");

    // SET with its options, GET.
    let _: () = c.set("k", "v1").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v1");
    let nx: Option<String> = redis::cmd("SET").arg("k").arg("v2").arg("NX").query(&mut c).unwrap();
    assert_eq!(nx, None, "NX on an existing key sets nothing");
    let xx: String = redis::cmd("SET").arg("k").arg("v3").arg("XX").query(&mut c).unwrap();
    assert_eq!(xx, "OK");
    let absent: Option<String> = redis::cmd("SET").arg("nope").arg("x").arg("XX").query(&mut c).unwrap();
    assert_eq!(absent, None);
    let _: () = redis::cmd("SET")
        .arg("e")
        .arg("x")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert!((99..=100).contains(&c.ttl::<_, i64>("e").unwrap()));
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("x")
        .arg("PX")
        .arg(100_000)
        .query(&mut c)
        .unwrap();
    assert!((99_000..=100_000).contains(&c.pttl::<_, i64>("p").unwrap()));
    assert!(
        error_text(
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("NX")
                .arg("XX")
                .query::<()>(&mut c)
        )
        .contains("syntax error")
    );
    assert!(
        error_text(redis::cmd("SET").arg("k").arg("v").arg("EX").arg(0).query::<()>(&mut c))
            .contains("invalid expire time in 'set' command")
    );

    // DEL, EXISTS, counters.
    assert_eq!(c.exists::<_, i64>(&["k", "k", "nope"]).unwrap(), 2);
    assert_eq!(c.del::<_, i64>(&["k", "nope"]).unwrap(), 1);
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(redis::cmd("INCRBY").arg("n").arg(41).query::<i64>(&mut c).unwrap(), 42);
    assert_eq!(c.decr::<_, _, i64>("n", 1).unwrap(), 41);
    assert_eq!(redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(), 40);
    let _: () = c.set("s", "text").unwrap();
    assert!(error_text(c.incr::<_, _, i64>("s", 1)).contains("value is not an integer or out of range"));
    let _: () = c.set("max", i64::MAX).unwrap();
    assert!(error_text(c.incr::<_, _, i64>("max", 1)).contains("increment or decrement would overflow"));

    // MSET, MGET.
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .query(&mut c)
        .unwrap();
    let got: Vec<Option<i64>> = redis::cmd("MGET").arg("a").arg("b").arg("c").query(&mut c).unwrap();
    assert_eq!(got, [Some(1), Some(2), None]);

    // Expiry commands.
    assert_eq!(c.ttl::<_, i64>("a").unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("missing").unwrap(), -2);
    assert!(c.expire::<_, bool>("a", 100).unwrap());
    assert_eq!(c.ttl::<_, i64>("a").unwrap(), 100);
    assert!(c.pexpire::<_, bool>("a", 50_000).unwrap());
    assert!((49_000..=50_000).contains(&c.pttl::<_, i64>("a").unwrap()));
    assert!(c.persist::<_, bool>("a").unwrap());
    assert_eq!(c.ttl::<_, i64>("a").unwrap(), -1);
    assert!(!c.expire::<_, bool>("missing", 10).unwrap());

    // DBSIZE, FLUSHALL.
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 7, "e p n s max a b");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);

    // What clients send on start.
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("tester").query(&mut c).unwrap();
    assert_eq!(
        redis::cmd("CLIENT").arg("GETNAME").query::<String>(&mut c).unwrap(),
        "tester"
    );
    let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut c).unwrap();
    assert_eq!(save, ["save", ""]);
    let docs: Vec<Value> = redis::cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();
    assert!(docs.is_empty());
    assert!(error_text(redis::cmd("HELLO").arg(3).query::<Value>(&mut c)).contains("unsupported protocol version"));
    let hello: Vec<Value> = redis::cmd("HELLO").arg(2).query(&mut c).unwrap();
    assert_eq!(hello.len(), 14);

    // PUBLISH with nobody listening; errors as Redis words them.
    assert_eq!(c.publish::<_, _, i64>("nobody", "hi").unwrap(), 0);
    assert_eq!(
        error_text(redis::cmd("GETX").arg("a").query::<()>(&mut c)),
        "ResponseError: unknown command 'GETX', with args beginning with: 'a' "
    );
    assert!(error_text(redis::cmd("GET").query::<()>(&mut c)).contains("wrong number of arguments for 'get' command"));

    // QUIT: +OK, then the server closes.
    let quit: String = redis::cmd("QUIT").query(&mut c).unwrap();
    assert_eq!(quit, "OK");
}

#[test]
fn ten_thousand_pipelined_commands() {
    let server = kv(&[]);
    let mut c = client(&server);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg("counter");
    }
    let counts: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(counts, (1..=5000).collect::<Vec<i64>>());
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.get(format!("key:{}", i % 5000));
    }
    let values: Vec<i64> = pipe.query(&mut c).unwrap();
    assert!(values.iter().enumerate().all(|(i, &v)| v == (i % 5000) as i64));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The client: 16,000 `GET big` (an 8 KB value: 128 MB of replies)
/// pipelined, read only once all are sent. Every reply arrives; the server
/// holds about a high watermark of output for it (it used to answer a whole
/// read's worth of requests at once, pass `max_output` and reset the client
/// after 8 replies, having grown by 116 MB).
#[test]
fn a_late_reader_of_big_values_gets_every_reply_in_bounded_memory() {
    let server = kv(&["--reactors", "1"]);
    let mut c = client(&server);
    let value = util::pattern(8192, 3);
    let _: () = c.set("big", &value).unwrap();
    let before = rss_kib(server.pid());
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(before)));
    let sampler = {
        let (stop, peak, pid) = (Arc::clone(&stop), Arc::clone(&peak), server.pid());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut s = util::connect(server.addr);
    let requests = b"GET big\r\n".repeat(16_000);
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&requests));
    sender.join().unwrap().unwrap(); // all sent before anything is read
    let mut reply = vec![0u8; 7 + 8192 + 2];
    for i in 0..16_000 {
        s.read_exact(&mut reply).unwrap_or_else(|e| panic!("reply {i}: {e}"));
        assert_eq!(&reply[..7], b"$8192\r\n");
        assert!(
            reply[7..7 + 8192] == value[..] && &reply[7 + 8192..] == b"\r\n",
            "reply {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!("server RSS grew by {grown} KiB serving 128 MB of replies to a late reader");
    // High watermark (256 KiB) + one reply + the 144 KB of requests held as
    // input + allocator slack; it was 116 MB.
    assert!(grown < 4 * 1024, "the server grew by {grown} KiB");
}

#[test]
fn publish_subscribe_across_reactors_keeps_each_publishers_order() {
    let server = kv(&[]);
    let (subscribed, ready) = std::sync::mpsc::channel();
    let subscribers: Vec<_> = (0..4)
        .map(|_| {
            let mut c = client(&server);
            let subscribed = subscribed.clone();
            thread::spawn(move || {
                let mut ps = c.as_pubsub();
                ps.subscribe("news").unwrap(); // returns once the server confirmed
                ps.set_read_timeout(Some(DEADLINE)).unwrap();
                subscribed.send(()).unwrap();
                let mut last = [-1i64; 2];
                for _ in 0..1000 {
                    let msg: String = ps.get_message().unwrap().get_payload().unwrap();
                    let (publisher, n) = msg.split_once(':').unwrap();
                    let (p, n): (usize, i64) = (publisher.parse().unwrap(), n.parse().unwrap());
                    assert_eq!(n, last[p] + 1, "publisher {p}'s messages in order");
                    last[p] = n;
                }
                last
            })
        })
        .collect();
    for _ in 0..4 {
        ready.recv_timeout(DEADLINE).unwrap();
    }
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let mut c = client(&server);
            thread::spawn(move || {
                for n in 0..500 {
                    let got: i64 = c.publish("news", format!("{p}:{n}")).unwrap();
                    assert_eq!(got, 4, "every subscriber counted");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for s in subscribers {
        assert_eq!(s.join().unwrap(), [499, 499]);
    }
}

#[test]
fn a_key_set_with_px_100_is_gone_on_time_and_never_before() {
    let server = kv(&[]);
    let mut c = client(&server);
    let sent = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let set_answered = Instant::now();
    let gone_at = loop {
        let asked = Instant::now();
        let v: Option<String> = c.get("k").unwrap();
        if v.is_none() {
            break asked;
        }
        assert!(
            asked < set_answered + Duration::from_millis(150),
            "still there after 150 ms"
        );
        thread::sleep(Duration::from_millis(2));
    };
    assert!(
        gone_at + Duration::from_millis(2) >= sent + Duration::from_millis(100),
        "gone before its time"
    );
    assert!(
        gone_at <= set_answered + Duration::from_millis(110),
        "gone {:?} after SET",
        gone_at - set_answered
    );
    // Nobody reads the others: the reactors' sweep deletes them.
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("t{i}"))
            .arg("v")
            .arg("PX")
            .arg(50)
            .query(&mut c)
            .unwrap();
    }
    wait_for("the sweep to delete expired keys", || {
        redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap() == 0
    });
}

#[test]
fn memory_and_request_limits_answer_as_redis_does() {
    let server = kv(&["--maxmemory", "200000", "--max-bulk", "100000"]);
    let mut c = client(&server);
    let value = vec![b'x'; 50_000];
    let mut stored = 0;
    let oom = loop {
        match c.set::<_, _, ()>(format!("k{stored}"), &value) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10, "the limit never came");
    };
    assert_eq!(oom.code(), Some("OOM"), "{oom}");
    assert!(
        oom.to_string()
            .contains("command not allowed when used memory > 'maxmemory'."),
        "{oom}"
    );
    assert_eq!(c.del::<_, i64>("k0").unwrap(), 1);
    let _: () = c.set("again", "small").unwrap();
    // An argument over --max-bulk: Redis's error, then the connection is closed.
    let mut s = util::connect(server.addr);
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$200000\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"-ERR Protocol error: invalid bulk length\r\n");
}

/// What a malformed request gets: the reply Redis 7 gives (`None`: no reply,
/// the connection stays open), and whether the connection is then closed.
#[test]
fn malformed_requests_are_answered_and_closed_as_redis_does() {
    let server = kv(&[]);
    let cases: [(&[u8], &[u8], bool); 8] = [
        // Garbage on one line is an inline command nobody knows.
        (
            b"\x01\x02garbage here\r\n",
            b"-ERR unknown command '\x01\x02garbage', with args beginning with: 'here' \r\n",
            false,
        ),
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n", true),
        (
            b"*99999999\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
            true,
        ),
        (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n", true),
        (
            b"*1\r\n$999999999999\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
            true,
        ),
        (
            b"*1\r\nx4\r\nPING\r\n",
            b"-ERR Protocol error: expected '$', got 'x'\r\n",
            true,
        ),
        (b"*-1\r\nPING\r\n", b"+PONG\r\n", false),
        (
            &[b'z'; 70_000],
            b"-ERR Protocol error: too big inline request\r\n",
            true,
        ),
    ];
    for (request, reply, closes) in cases {
        let mut s = util::connect(server.addr);
        s.write_all(request).unwrap();
        let mut got = vec![0u8; reply.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(
            got,
            reply,
            "reply to {:?}",
            String::from_utf8_lossy(&request[..request.len().min(20)])
        );
        s.set_read_timeout(Some(Duration::from_millis(if closes { 5000 } else { 100 })))
            .unwrap();
        let after = s.read(&mut [0u8; 64]);
        if closes {
            assert_eq!(after.unwrap(), 0, "closed after {:?}", String::from_utf8_lossy(reply));
        } else {
            assert!(after.is_err(), "still open and quiet");
        }
    }
    // A bulk length without its data: no reply, the server waits for the rest;
    // when the client gives up (its FIN), the server closes without a word.
    let mut s = util::connect(server.addr);
    s.write_all(b"*1\r\n$5\r\nab").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(s.read(&mut [0u8; 1]).is_err(), "no reply to half a request");
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(TcpStream::connect(server.addr).unwrap()); // still serving
}

/// A subscriber that never reads is disconnected once 32 MiB wait for it (as
/// Redis's output buffer limit for pub/sub does), and the server's memory with it.
#[test]
fn a_subscriber_that_never_reads_is_dropped_at_its_output_limit() {
    let server = kv(&["--reactors", "1"]);
    let mut deaf = util::connect(server.addr);
    deaf.write_all(b"SUBSCRIBE news\r\n").unwrap();
    let mut confirm = [0u8; 33];
    deaf.read_exact(&mut confirm).unwrap();
    assert!(confirm.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"));
    let mut c = client(&server);
    let payload = vec![b'p'; 64 * 1024];
    let before = rss_kib(server.pid());
    let mut published = 0;
    // 64 KiB at a time: the socket buffers fill, then the server's queue, to
    // 32 MiB; 2,000 messages (128 MiB) is far more than that takes.
    while c.publish::<_, _, i64>("news", &payload).unwrap() == 1 {
        published += 1;
        assert!(published < 2000, "the subscriber was never dropped");
    }
    let grown = rss_kib(server.pid()).saturating_sub(before);
    eprintln!("dropped after {published} messages of 64 KiB; the server then held {grown} KiB more than before");
    assert!(
        published >= 32 * 1024 / 64,
        "not before 32 MiB was queued: {published} messages"
    );
    assert!(grown < 64 * 1024, "the server grew {grown} KiB");
}
