//! The guide's systemd units (`examples/deploy/coreloop-echo.*`), checked by
//! `systemd-analyze verify`, and their command lines run as systemd would run
//! them: the socket unit's socket passed to the service's `ExecStart` by
//! `systemd-socket-activate`; the blue/green template's `ExecStart` twice, the
//! second taking over from the first.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use libtest_mimic::Failed;

use crate::check;
use crate::util::example::{echo_bin, spawn_example};
use crate::util::load::Load;
use crate::util::{TempDir, connect, pattern, roundtrip};

const SOCKET: &str = include_str!("../../examples/deploy/coreloop-echo.socket");
const SERVICE: &str = include_str!("../../examples/deploy/coreloop-echo.service");
const TEMPLATE: &str = include_str!("../../examples/deploy/coreloop-echo@.service");

/// A unit with the test's echo binary, port and runtime directory.
fn localize(unit: &str, port: u16, dir: &Path) -> String {
    unit.replace("/usr/local/bin/echo", &echo_bin().display().to_string())
        .replace("127.0.0.1:7878", &format!("127.0.0.1:{port}"))
        .replace("/run/coreloop-echo", &dir.display().to_string())
}

/// The arguments of a unit's `ExecStart=` line.
fn exec_args(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().skip(1).map(String::from).collect()
}

pub fn units_verify() -> Result<(), Failed> {
    let dir = TempDir::new("systemd-verify");
    let port = crate::free_port();
    let write = |name: &str, unit: &str| -> std::io::Result<std::path::PathBuf> {
        let path = dir.path(name);
        std::fs::write(&path, localize(unit, port, &dir.0))?;
        Ok(path)
    };
    // The socket and its service together: one names the other.
    let pair = [
        write("coreloop-echo.socket", SOCKET)?,
        write("coreloop-echo.service", SERVICE)?,
    ];
    let blue = [write("coreloop-echo@blue.service", TEMPLATE)?];
    for units in [&pair[..], &blue[..]] {
        let out = Command::new("systemd-analyze").arg("verify").args(units).output()?;
        let said = String::from_utf8_lossy(&out.stderr);
        check(out.status.success() && said.trim().is_empty(), || {
            format!("systemd-analyze verify {units:?}: {}: {said}", out.status)
        })?;
    }
    Ok(())
}

pub fn socket_activation() -> Result<(), Failed> {
    let dir = TempDir::new("systemd-activate");
    let port = crate::free_port();
    let socket = localize(SOCKET, port, &dir.0);
    let listen = socket
        .lines()
        .find_map(|l| l.strip_prefix("ListenStream="))
        .expect("a ListenStream line");
    let args = exec_args(&localize(SERVICE, port, &dir.0));
    let mut command = Command::new("systemd-socket-activate");
    command.args(["-l", listen]).arg(echo_bin());
    // systemd-socket-activate opens the socket and execs the service's command
    // at the first connection: connect before reading the banner.
    let addr: SocketAddr = listen.parse()?;
    let spawned = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_example(&mut command, &args)
    });
    let first = loop {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            break s;
        }
        check(!spawned.is_finished(), || {
            "systemd-socket-activate did not listen".into()
        })?;
        std::thread::yield_now();
    };
    first.set_read_timeout(Some(crate::util::DEADLINE))?;
    let echo = spawned.join().map_err(|_| "the service did not start")?;
    check(echo.banner.starts_with(&format!("listening on {addr} ")), || {
        echo.banner.clone()
    })?;
    let data = pattern(256 << 10, 9);
    check(roundtrip(&first, &data) == data, || "the echo differs".into())?;
    check(roundtrip(&connect(addr), b"second") == b"second", || {
        "the second echo differs".into()
    })?;
    drop(first);
    echo.signal("-TERM");
    let (status, lines) = echo.finish();
    check(status == 0, || format!("exited with {status}: {lines:?}"))
}

pub fn blue_green_template() -> Result<(), Failed> {
    let dir = TempDir::new("systemd-blue-green");
    let port = crate::free_port();
    let args = exec_args(&localize(TEMPLATE, port, &dir.0));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let blue = spawn_example(&mut Command::new(echo_bin()), &args);
    let load = Load::start(blue.addr, 4, 2, &[]);
    crate::wait_until(|| load.cycles() >= 100, "cycles on blue")?;
    let green = spawn_example(&mut Command::new(echo_bin()), &args);
    let handed = load.cycles();
    crate::wait_until(|| load.cycles() >= handed + 200, "cycles on green")?;
    let report = load.stop();
    check(report.failures.is_empty(), || format!("{:?}", report.failures))?;
    let (status, lines) = blue.finish();
    check(status == 0, || format!("blue exited with {status}: {lines:?}"))?;
    green.signal("-TERM");
    let (status, lines) = green.finish();
    check(status == 0, || format!("green exited with {status}: {lines:?}"))
}
