//! Load balancers in front of two echo instances, as the guide's chapter
//! "Scaling out" sets them up: HAProxy in TCP mode with the PROXY protocol
//! (`send-proxy-v2`, or `send-proxy` for v1), health checks, retries with
//! redispatch; nginx's stream module with `proxy_protocol on` and
//! `proxy_next_upstream`. The configurations written here are the guide's, with
//! the test's ports.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::check;
use crate::util::example::{Running, example_bin, spawn_example};
use crate::util::load::Load;
use crate::util::{DEADLINE, TempDir};

/// The client addresses the load comes from: each instance must log them.
const CLIENTS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
];

/// Where the test's probe for HAProxy's readiness comes from.
const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));

/// The guide's HAProxy configuration (`examples/deploy/haproxy.cfg`), with the
/// test's ports and PROXY protocol option.
fn haproxy_config(frontend: u16, servers: [u16; 2], send_proxy: &str) -> String {
    include_str!("../../examples/deploy/haproxy.cfg")
        .replace("127.0.0.1:7000", &format!("127.0.0.1:{frontend}"))
        .replace("127.0.0.1:7001", &format!("127.0.0.1:{}", servers[0]))
        .replace("127.0.0.1:7002", &format!("127.0.0.1:{}", servers[1]))
        .replace("send-proxy-v2", send_proxy)
}

/// The guide's nginx configuration (`examples/deploy/nginx.conf`), likewise,
/// with the test's directory for its log and pid files.
fn nginx_config(dir: &Path, frontend: u16, servers: [u16; 2]) -> String {
    include_str!("../../examples/deploy/nginx.conf")
        .replace("127.0.0.1:7000", &format!("127.0.0.1:{frontend}"))
        .replace("127.0.0.1:7001", &format!("127.0.0.1:{}", servers[0]))
        .replace("127.0.0.1:7002", &format!("127.0.0.1:{}", servers[1]))
        .replace("/var/run/coreloop", &dir.display().to_string())
}

/// A balancer process, stopped when dropped: SIGTERM first, so that nginx's
/// master takes its workers down with it.
struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let end = Instant::now() + DEADLINE;
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection to the frontend from [`PROBE`], closed at once.
fn probe(frontend: u16) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(PROBE, 0).into())?;
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], frontend)).into())
}

/// Which balancer, and how it speaks the PROXY protocol.
#[derive(Clone, Copy)]
enum Kind {
    /// HAProxy with this server option: `send-proxy-v2` or `send-proxy`.
    Haproxy(&'static str),
    /// nginx's stream module (PROXY protocol v1).
    Nginx,
}

fn balancer(kind: Kind, dir: &TempDir, frontend: u16, servers: [u16; 2]) -> Result<Balancer, Failed> {
    let log = dir.path("balancer.log");
    let mut command = match kind {
        Kind::Haproxy(send_proxy) => {
            let cfg = dir.path("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config(frontend, servers, send_proxy))?;
            let mut c = Command::new("haproxy");
            c.args(["-db", "-f"]).arg(cfg);
            c
        }
        Kind::Nginx => {
            let cfg = dir.path("nginx.conf");
            std::fs::write(&cfg, nginx_config(&dir.0, frontend, servers))?;
            let mut c = Command::new("nginx");
            c.arg("-c").arg(cfg);
            c
        }
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut proxy = Balancer(child);
    let end = Instant::now() + DEADLINE;
    while probe(frontend).is_err() {
        let exited = proxy.0.try_wait()?;
        if exited.is_some() || Instant::now() >= end {
            let said = std::fs::read_to_string(&log).unwrap_or_default()
                + &std::fs::read_to_string(dir.path("nginx.log")).unwrap_or_default();
            return Err(format!("the balancer did not start listening ({exited:?}): {said}").into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(proxy)
}

/// An echo instance behind the balancer: PROXY header required, a line per
/// connection naming its client, restartable through `handover`.
fn echo(addr: &str, handover: &Path) -> Running {
    spawn_example(
        &mut Command::new(example_bin("echo")),
        &[
            "--addr",
            addr,
            "--reactors",
            "2",
            "--proxy-protocol",
            "required",
            "--trusted-proxies",
            "127.0.0.1/32",
            "--handover",
            handover.to_str().unwrap(),
            "--grace",
            "30",
            "--log",
            "info",
        ],
    )
}

/// The clients an instance logged serving so far: `(client, balancer)` pairs.
fn served(lines: &[String]) -> Vec<(IpAddr, IpAddr)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find(" serves ")? + 8..];
            let (client, via) = rest.split_once(" (via ")?;
            let client: SocketAddr = client.parse().ok()?;
            let via: SocketAddr = via.trim_end_matches(')').parse().ok()?;
            Some((client.ip(), via.ip()))
        })
        .collect()
}

/// Every stderr line an instance printed so far.
fn lines_of(echo: &Running, seen: &mut Vec<String>) -> Vec<(IpAddr, IpAddr)> {
    seen.extend(echo.stderr.try_iter());
    served(seen)
}

/// Sums `key=N` over an instance's exit lines.
fn exit_total(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l.starts_with("reactor "))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))))
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

fn ensure_no_failures(what: &str, failures: &[String]) -> Result<(), Failed> {
    check(failures.is_empty(), || {
        format!(
            "{what}: {} failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        )
    })
}

/// The whole scenario with one balancer.
fn scenario(kind: Kind, name: &str) -> Result<(), Failed> {
    let dir = TempDir::new(name);
    let ports = [crate::free_port(), crate::free_port()];
    let addrs = ports.map(|p| format!("127.0.0.1:{p}"));
    let handovers = [dir.path("echo1.handover"), dir.path("echo2.handover")];
    let mut echo1 = echo(&addrs[0], &handovers[0]);
    let echo2 = echo(&addrs[1], &handovers[1]);
    let frontend = crate::free_port();
    let _balancer = balancer(kind, &dir, frontend, ports)?;
    let front = SocketAddr::from(([127, 0, 0, 1], frontend));
    let (mut seen1, mut seen2) = (Vec::new(), Vec::new());

    // 1. Byte-exact echo through the balancer; both instances serve; each
    //    sees the real clients, 127.0.0.2 and .3, via HAProxy at 127.0.0.1.
    let load = Load::start(front, 4, 0, &CLIENTS);
    let end = Instant::now() + DEADLINE;
    loop {
        let (s1, s2) = (lines_of(&echo1, &mut seen1), lines_of(&echo2, &mut seen2));
        let sees_all = |s: &[(IpAddr, IpAddr)]| CLIENTS.iter().all(|c| s.iter().any(|(ip, _)| ip == c));
        if load.cycles() >= 200 && sees_all(&s1) && sees_all(&s2) {
            break;
        }
        if Instant::now() >= end {
            let report = load.stop();
            return Err(format!(
                "after {} cycles ({} failed) the instances logged {s1:?} and {s2:?}",
                report.cycles,
                report.failures.len()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let report = load.stop();
    ensure_no_failures("cycles through the balancer", &report.failures)?;
    let balancer = IpAddr::from([127, 0, 0, 1]);
    // HAProxy's health checks carry a header too (it sends one on checks when
    // the server has send-proxy), naming HAProxy itself; one whose FIN comes
    // after the header reaches `on_open` and is logged. Every other line must
    // name one of the test's clients.
    let health_check = |client: &IpAddr| *client == balancer;
    let strangers: Vec<_> = [served(&seen1), served(&seen2)]
        .concat()
        .into_iter()
        .filter(|(client, via)| {
            !(CLIENTS.contains(client) || *client == PROBE || health_check(client)) || *via != balancer
        })
        .collect();
    check(strangers.is_empty(), || {
        format!("the instances logged clients other than the test's: {strangers:?}")
    })?;

    // 2. Restart echo1 by the zero-downtime procedure while cycles and
    //    long-lived streams run through HAProxy.
    let load = Load::start(front, 4, 4, &CLIENTS);
    let before = load.cycles();
    crate::wait_until(
        || load.cycles() >= before + 100 && load.streamed() >= 32 * 4096,
        "load before the restart",
    )?;
    let new1 = echo(&addrs[0], &handovers[0]);
    let mut seen_new = Vec::new();
    let at_restart = load.cycles();
    crate::wait_until(
        || load.cycles() >= at_restart + 200 && !lines_of(&new1, &mut seen_new).is_empty(),
        "the restarted instance serving",
    )?;
    let streamed = load.streamed();
    crate::wait_until(
        || load.streamed() >= streamed + 32 * 4096,
        "the streams after the restart",
    )?;
    let report = load.stop();
    ensure_no_failures("connections during the restart", &report.failures)?;
    let (status, old_lines) = std::mem::replace(&mut echo1, new1).finish();
    check(status == 0, || {
        format!("the old echo1 exited with {status}: {old_lines:?}")
    })?;
    check(exit_total(&old_lines, "proxy_errors") == 0, || format!("{old_lines:?}"))?;

    // 3. Kill echo2 outright: connections the balancer sends it before it
    //    notices (HAProxy's health checks, nginx's failed connects) are retried
    //    on echo1; not one fails.
    let mut echo2 = echo2;
    echo2.child.kill()?;
    echo2.child.wait()?;
    let load = Load::start(front, 4, 0, &CLIENTS);
    crate::wait_until(|| load.cycles() >= 200, "cycles after the kill")?;
    let report = load.stop();
    ensure_no_failures("connections after an instance was killed", &report.failures)?;

    // 4. A client that skips the balancer is closed without a byte, and counted.
    let mut direct = TcpStream::connect(&addrs[0])?;
    direct.set_read_timeout(Some(DEADLINE))?;
    direct.write_all(b"hello without a header\r\n")?;
    let mut got = Vec::new();
    let _ = direct.read_to_end(&mut got); // a close or a reset
    check(got.is_empty(), || format!("the direct client got {got:?}"))?;
    echo1.signal("-TERM");
    let (status, lines) = echo1.finish();
    check(status == 0, || format!("echo1 exited with {status}"))?;
    let errors = exit_total(&lines, "proxy_errors");
    check(errors == 1, || {
        format!("{errors} PROXY header errors counted, not 1: {lines:?}")
    })
}

pub fn haproxy_send_proxy_v2() -> Result<(), Failed> {
    scenario(Kind::Haproxy("send-proxy-v2"), "haproxy-v2")
}

pub fn haproxy_send_proxy_v1() -> Result<(), Failed> {
    scenario(Kind::Haproxy("send-proxy"), "haproxy-v1")
}

pub fn nginx_stream_proxy_protocol() -> Result<(), Failed> {
    scenario(Kind::Nginx, "nginx")
}
