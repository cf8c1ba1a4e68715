//! Driving the echo example as a child process, as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};

/// Builds the examples once (a no-op when `cargo test` already did) and returns
/// the path of example `name`.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        // With the features this test was built with (the examples use them too).
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--examples", "--manifest-path", manifest]);
        if cfg!(feature = "tls") {
            cargo.args(["--features", "tls"]);
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "building the examples failed");
    });
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // deps/
    dir.pop(); // debug/
    dir.join("examples").join(name)
}

pub fn echo_bin() -> PathBuf {
    example_bin("echo")
}

pub fn run(args: &[&str]) -> Output {
    Command::new(echo_bin())
        .args(args)
        .output()
        .expect("run the echo example")
}

/// A running echo example: its address, and its stderr lines as they come.
pub struct Running {
    pub child: Child,
    /// The first listener's address, when it is TCP (else 0.0.0.0:0).
    pub addr: SocketAddr,
    /// The banner line as printed.
    pub banner: String,
    pub stderr: Receiver<String>,
    collector: Option<JoinHandle<()>>,
}

/// Starts the echo example on a free port with `args` (through `sh -c` with
/// `shell_prefix` before it, e.g. `ulimit -n 40;`) and waits for its banner.
pub fn start_with(shell_prefix: &str, args: &[&str]) -> Running {
    let mut full = vec!["--addr", "127.0.0.1:0"];
    full.extend_from_slice(args);
    spawn_example(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix} exec \"$0\" \"$@\""))
            .arg(echo_bin()),
        &full,
    )
}

/// Starts example `name` with exactly `args` and waits for its banner.
pub fn start_example(name: &str, args: &[&str]) -> Running {
    spawn_example(&mut Command::new(example_bin(name)), args)
}

/// Runs `cmd args…` with piped output, reads the banner, collects stderr.
pub fn spawn_example(cmd: &mut Command, args: &[&str]) -> Running {
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut banner = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let words: Vec<&str> = banner.split_whitespace().collect();
    assert!(words.len() >= 6, "banner: {banner:?}");
    assert_eq!(
        (words[0], words[1], words[words.len() - 1]),
        ("listening", "on", "reactors"),
        "banner: {banner:?}"
    );
    // The first listener's address when it is TCP (a Unix one shows as unix:PATH).
    let first = words[2].trim_end_matches(',');
    let addr = first.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (tx, stderr) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let collector = thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Running {
        child,
        addr,
        banner: banner.trim_end().to_string(),
        stderr,
        collector: Some(collector),
    }
}

/// Collects a child's output once it exits, killing it (and failing the test) if
/// it has not exited within [`DEADLINE`](super::DEADLINE).
pub fn output_within(mut child: Child) -> Output {
    fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut s) = pipe {
                let _ = s.read_to_end(&mut out);
            }
            out
        })
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let end = std::time::Instant::now() + super::DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            panic!("the child did not exit within {:?}", super::DEADLINE);
        }
        thread::sleep(std::time::Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn start(args: &[&str]) -> Running {
    start_with("", args)
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr lines until one satisfies `pred` and returns it; panics naming
    /// `what` once [`DEADLINE`](super::DEADLINE) has passed in all, even while
    /// other lines keep coming. Lines read on the way are appended to `seen`.
    pub fn wait_line(&self, what: &str, seen: &mut Vec<String>, mut pred: impl FnMut(&str) -> bool) -> String {
        let end = std::time::Instant::now() + super::DEADLINE;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:?}"));
            seen.push(line.clone());
            if pred(&line) {
                return line;
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit (at most [`DEADLINE`](super::DEADLINE): a server that does
    /// not stop is killed and the test fails); returns the exit code and every
    /// stderr line.
    pub fn finish(mut self) -> (i32, Vec<String>) {
        let end = std::time::Instant::now() + super::DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() >= end {
                let _ = self.child.kill();
                panic!("the example did not exit within {:?}", super::DEADLINE);
            }
            thread::sleep(std::time::Duration::from_millis(5));
        };
        if let Some(c) = self.collector.take() {
            c.join().unwrap();
        }
        let lines = self.stderr.try_iter().collect();
        (status.code().expect("exited, not killed"), lines)
    }

    /// The process's CPU time so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces) start at state.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `reactor I: key=value …` exit lines into (reactor, key, value) lookups.
pub fn exit_value(lines: &[String], reactor: usize, key: &str) -> u64 {
    let prefix = format!("reactor {reactor}: ");
    let line = lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for reactor {reactor}: {lines:?}"));
    let field = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    field.parse().unwrap()
}

/// Reads until end of stream or error; returns how many bytes came.
pub fn drain(mut r: impl Read) -> usize {
    let mut buf = vec![0; 64 * 1024];
    let mut n = 0;
    while let Ok(k) = r.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k;
    }
    n
}
