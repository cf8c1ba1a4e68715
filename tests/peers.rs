//! Real peers that no one here wrote, driving the examples as their users would:
//! `redis-cli`, `redis-benchmark` and `redis-server` (Debian's `redis-tools` and
//! `redis-server`), and HAProxy and nginx in front of echo instances (Debian's
//! `haproxy`, `nginx-light` and `libnginx-mod-stream`); `.ci/run` installs them.
//!
//! A test whose program is missing is reported as ignored, with one line saying
//! what is missing — never as passed. (This binary has a harness of its own,
//! libtest-mimic, for that: the standard one cannot ignore at run time.)

#[path = "peers/balancers.rs"]
mod balancers;
#[path = "peers/strace.rs"]
mod strace;
#[path = "peers/systemd.rs"]
mod systemd;
#[cfg(feature = "tls")]
#[path = "peers/tls.rs"]
mod tls;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use util::example::{Running, example_bin, output_within, start_example};

/// Whether `program` can be run (found on `PATH`), or, for an absolute path,
/// whether that file is there.
fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return std::path::Path::new(program).exists();
    }
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A trial that needs `programs`; ignored, saying so, when one is missing.
fn needs(name: &str, programs: &[&str], package: &str, run: fn() -> Result<(), Failed>) -> Trial {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!(
            "skipped {name}: {} not installed (Debian package {package})",
            missing.join(", ")
        );
    }
    Trial::test(name, run).with_ignored_flag(!missing.is_empty())
}

fn main() {
    let mut args = Arguments::from_args();
    // One trial at a time: they run servers and balancers on ports of their
    // choosing, and share two CPUs.
    args.test_threads.get_or_insert(1);
    // Build the examples before any trial runs them.
    let _ = example_bin("kv");
    let mut trials = vec![
        needs(
            "redis_cli_commands_and_a_session",
            &["redis-cli"],
            "redis-tools",
            redis_cli_commands_and_a_session,
        ),
        needs(
            "redis_cli_pipe_mode",
            &["redis-cli"],
            "redis-tools",
            redis_cli_pipe_mode,
        ),
        needs(
            "redis_benchmark_for_a_second",
            &["redis-benchmark"],
            "redis-tools",
            redis_benchmark_for_a_second,
        ),
        needs(
            "malformed_requests_get_what_redis_server_gives",
            &["redis-server"],
            "redis-server",
            malformed_requests_get_what_redis_server_gives,
        ),
        needs(
            "haproxy_send_proxy_v2",
            &["haproxy"],
            "haproxy",
            balancers::haproxy_send_proxy_v2,
        ),
        needs(
            "haproxy_send_proxy_v1",
            &["haproxy"],
            "haproxy",
            balancers::haproxy_send_proxy_v1,
        ),
        needs(
            "nginx_stream_proxy_protocol",
            &["nginx", "/usr/lib/nginx/modules/ngx_stream_module.so"],
            "nginx-light and libnginx-mod-stream",
            balancers::nginx_stream_proxy_protocol,
        ),
        needs(
            "systemd_units_verify",
            &["systemd-analyze"],
            "systemd",
            systemd::units_verify,
        ),
        needs(
            "systemd_socket_activation",
            &["systemd-socket-activate"],
            "systemd",
            systemd::socket_activation,
        ),
        Trial::test("systemd_blue_green_template", systemd::blue_green_template),
        needs(
            "proxy_preamble_reads",
            &["strace"],
            "strace",
            strace::proxy_preamble_reads,
        ),
    ];
    #[cfg(feature = "tls")]
    trials.extend([
        needs("tls_openssl_s_client", &["openssl"], "openssl", tls::openssl_s_client),
        needs("tls_python_ssl", &["python3"], "python3", tls::python_ssl),
    ]);
    #[cfg(not(feature = "tls"))]
    for name in ["tls_openssl_s_client", "tls_python_ssl"] {
        eprintln!("skipped {name}: built without the `tls` feature (cargo test --features tls)");
        trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn kv() -> Running {
    start_example("kv", &["--addr", "127.0.0.1:0", "--reactors", "2"])
}

/// Runs `program args…` with `stdin`, within the test deadline.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Result<Output, Failed> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    child.stdin.take().unwrap().write_all(stdin)?;
    let out = output_within(child);
    if !out.status.success() {
        return Err(format!("{program} {args:?} exited with {}", out.status).into());
    }
    Ok(out)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// A port free at the moment (the trials run one at a time, so no other trial
/// takes it before the caller binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `cond` until it holds, failing naming `what` after the test deadline.
fn wait_until(mut cond: impl FnMut() -> bool, what: &str) -> Result<(), Failed> {
    let end = std::time::Instant::now() + util::DEADLINE;
    while !cond() {
        check(std::time::Instant::now() < end, || {
            format!("timed out waiting for {what}")
        })?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn redis_cli_commands_and_a_session() -> Result<(), Failed> {
    let server = kv();
    let port = server.addr.port().to_string();
    let cli = |args: &[&str]| -> Result<String, Failed> {
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        Ok(String::from_utf8(run("redis-cli", &all, b"")?.stdout)?)
    };
    // One command per invocation, as from a shell.
    for (args, want) in [
        (&["set", "greeting", "hello"][..], "OK\n"),
        (&["get", "greeting"], "hello\n"),
        (&["incr", "visits"], "1\n"),
        (&["ttl", "greeting"], "-1\n"),
        (&["exists", "greeting", "nope"], "1\n"),
        (&["ping"], "PONG\n"),
    ] {
        let got = cli(args)?;
        check(got == want, || format!("redis-cli {args:?}: {got:?}, not {want:?}"))?;
    }
    // A session: commands typed one per line, replies as redis-cli prints them.
    let session = run(
        "redis-cli",
        &["-p", &port],
        b"SET counter 41\nINCR counter\nMGET counter greeting missing\nGETX\nQUIT\n",
    )?;
    let got = String::from_utf8(session.stdout)?;
    // (redis-cli prints nothing for QUIT, whatever the server.)
    let want = "OK\n42\n42\nhello\n\nERR unknown command 'GETX', with args beginning with: \n\n";
    check(got == want, || format!("session printed {got:?}, not {want:?}"))
}

fn redis_cli_pipe_mode() -> Result<(), Failed> {
    let server = kv();
    let port = server.addr.port().to_string();
    let mut protocol = Vec::new();
    for i in 0..10_000 {
        let (k, v) = (format!("key:{i}"), format!("value:{i}"));
        write!(
            protocol,
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        )?;
    }
    let out = run("redis-cli", &["-p", &port, "--pipe"], &protocol)?;
    let text = String::from_utf8(out.stdout)?;
    check(text.contains("errors: 0, replies: 10000"), || {
        format!("--pipe said {text:?}")
    })?;
    let size = String::from_utf8(run("redis-cli", &["-p", &port, "dbsize"], b"")?.stdout)?;
    check(size == "10000\n", || format!("dbsize {size:?}"))
}

fn redis_benchmark_for_a_second() -> Result<(), Failed> {
    let server = kv();
    let port = server.addr.port().to_string();
    let out = run(
        "redis-benchmark",
        &[
            "-p",
            &port,
            "-t",
            "set,get,incr",
            "-n",
            "30000",
            "-c",
            "20",
            "-P",
            "4",
            "--csv",
        ],
        b"",
    )?;
    let csv = String::from_utf8(out.stdout)?;
    for test in ["SET", "GET", "INCR"] {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .ok_or_else(|| format!("no {test} line in {csv:?}"))?;
        let rps: f64 = line.split(',').nth(1).unwrap_or("").trim_matches('"').parse()?;
        check(rps > 1000.0, || format!("{test}: {rps} requests per second"))?;
    }
    Ok(())
}

/// Sends `request` and collects what comes back in 300 ms: the bytes, and
/// whether the connection was then closed.
fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.write_all(request).unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn malformed_requests_get_what_redis_server_gives() -> Result<(), Failed> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], port));
    util::wait_for("redis-server to listen", || TcpStream::connect(redis_addr).is_ok());
    let server = kv();
    let mut differ = Vec::new();
    for request in [
        &b"*abc\r\n"[..],
        b"*1\r\n$-1\r\n",
        b"*1\r\n$abc\r\n",
        b"*1\r\n$999999999999\r\n",
        b"*1\r\nx4\r\nPING\r\n",
        b"*-1\r\nPING\r\n",
        b"*0\r\nPING\r\n",
        b"*1\r\n$5\r\nab",
        b"GET\r\n",
        b"GETX a b\r\n",
        b"SET a b XX NX\r\nSET a b EX 0\r\nSET a b EX x\r\nSET a b PX 1 EX 1\r\n",
        b"SET n 9223372036854775807\r\nINCR n\r\nINCRBY n x\r\nDEL n\r\n",
        b"SUBSCRIBE a b\r\nGET x\r\nPING\r\nUNSUBSCRIBE a\r\nUNSUBSCRIBE b\r\nUNSUBSCRIBE\r\n",
        b"PING x\r\nECHO\r\nMSET a\r\nQUIT\r\nPING\r\n",
    ] {
        let theirs = exchange(redis_addr, request);
        let ours = exchange(server.addr, request);
        if theirs != ours {
            differ.push(format!(
                "{:?}: redis-server {:?}, kv {:?}",
                String::from_utf8_lossy(request),
                (String::from_utf8_lossy(&theirs.0), theirs.1),
                (String::from_utf8_lossy(&ours.0), ours.1)
            ));
        }
    }
    let _ = redis.kill();
    let _ = redis.wait();
    check(differ.is_empty(), || differ.join("\n"))
}
