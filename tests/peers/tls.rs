//! The echo example serving TLS (`--tls-self-signed`, feature `tls`) to clients
//! no one here wrote: `openssl s_client` and Python's `ssl` module. Each checks
//! the certificate the server printed the fingerprint of, and echoes byte-exact.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use libtest_mimic::Failed;

use crate::check;
use crate::util::example::{Running, echo_bin, spawn_example};

/// The echo example with a self-signed certificate: the server, and the
/// fingerprint it printed.
fn echo_tls() -> Result<(Running, String), Failed> {
    let mut seen = Vec::new();
    let echo = spawn_example(
        &mut Command::new(echo_bin()),
        &["--addr", "127.0.0.1:0", "--reactors", "2", "--tls-self-signed"],
    );
    let line = echo.wait_line("the fingerprint", &mut seen, |l| l.contains("fingerprint"));
    let fingerprint = line.rsplit(' ').next().unwrap_or_default().to_string();
    Ok((echo, fingerprint))
}

/// The totals of `key=N` over the exit lines.
fn total(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))))
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum()
}

pub fn openssl_s_client() -> Result<(), Failed> {
    let (echo, fingerprint) = echo_tls()?;
    let addr = echo.addr.to_string();
    // The certificate s_client receives is the one the server announced.
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()?;
    let shown = String::from_utf8(shown.stdout)?;
    check(shown.trim().ends_with(&fingerprint), || {
        format!("s_client saw {shown:?}, the server announced {fingerprint}")
    })?;
    // A session: lines typed, each echoed; TLS 1.3 with ALPN offered.
    let mut client = Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-quiet", "-tls1_3", "-alpn", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = client.stdin.take().unwrap();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    for line in ["hello from openssl", &"x".repeat(20_000), "the last line"] {
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        let mut back = String::new();
        stdout.read_line(&mut back)?;
        check(back.trim_end() == line, || {
            format!("sent {} bytes, got {} back", line.len(), back.len())
        })?;
    }
    // The server shuts down: s_client sees its close_notify and ends.
    echo.signal("-TERM");
    let status = crate::util::example::output_within(client).status;
    let (code, lines) = echo.finish();
    check(code == 0, || format!("echo exited with {code}: {lines:?}"))?;
    check(status.success(), || format!("s_client exited with {status}"))?;
    check(total(&lines, "tls_handshakes") == 2, || format!("{lines:?}"))?;
    check(total(&lines, "tls_errors") == 0, || format!("{lines:?}"))
}

const PYTHON_CLIENT: &str = r#"
import hashlib, socket, ssl, sys
addr, port, fingerprint = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # self-signed: checked by its fingerprint below
with socket.create_connection((addr, port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        der = s.getpeercert(binary_form=True)
        got = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
        assert got == fingerprint, (got, fingerprint)
        version = s.version()
        assert version in ("TLSv1.3", "TLSv1.2"), version
        for size in (1, 100, 16384, 16385, 100000, 1 << 20):
            data = bytes((i * 7 + size) % 256 for i in range(size))
            s.sendall(data)
            back = b""
            while len(back) < size:
                chunk = s.recv(65536)
                assert chunk, "closed early"
                back += chunk
            assert back == data, size
        s.unwrap()  # close_notify, and the server's in answer
print("ok", version)
"#;

pub fn python_ssl() -> Result<(), Failed> {
    let (echo, fingerprint) = echo_tls()?;
    let out = Command::new("python3")
        .args([
            "-c",
            PYTHON_CLIENT,
            "127.0.0.1",
            &echo.addr.port().to_string(),
            &fingerprint,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = crate::util::example::output_within(out);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    check(out.status.success() && said.starts_with("ok TLSv1."), || {
        format!("python: {} {said}", out.status)
    })?;
    echo.signal("-TERM");
    let (code, lines) = echo.finish();
    check(code == 0, || format!("echo exited with {code}"))?;
    // A clean close both ways: no truncation, no error.
    check(
        total(&lines, "tls_errors") == 0 && total(&lines, "tls_handshakes") == 1,
        || format!("{lines:?}"),
    )
}
