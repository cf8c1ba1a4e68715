//! # Scaling out
//!
//! One machine runs one coreloop process with a reactor per core. Past one
//! machine, run several behind an existing layer-4 load balancer — HAProxy,
//! nginx's stream module, a cloud load balancer — and restart them one at a
//! time. This chapter covers what that takes: the PROXY protocol (so each
//! server still knows its clients), balancer configurations that work (the
//! very files the tests run), restarts that drop nothing, and the arithmetic
//! for a million connections.
//!
//! ## The client's address: the PROXY protocol
//!
//! A balancer in TCP mode opens its own connection to a server: the server's
//! peer is the balancer. With the PROXY protocol the balancer starts each
//! connection with a short header naming the client (version 1 is a text line,
//! version 2 a binary block that may carry extra fields). A listener says
//! whether it expects one:
//!
//! ```
//! use coreloop::{Context, Handler, Listen, ProxyProtocol, Server};
//! # use bytes::BytesMut;
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     type Conn = ();
//!     fn on_open(&mut self, cx: &mut Context<'_>) {
//!         // The client the header named (or the peer, without one).
//!         let client = cx.peer_addr().to_string();
//!         if let Some(header) = cx.proxy() {
//!             log::info!("{client} via {}", header.balancer());
//!             if let Some(sni) = header.authority() {
//!                 log::info!("asked for {sni}");
//!             }
//!         }
//!     }
//!     fn on_data(&mut self, _: &mut (), cx: &mut Context<'_>, input: &mut BytesMut) {
//!         cx.write(input);
//!         input.clear();
//!     }
//! }
//!
//! # fn main() -> coreloop::Result<()> {
//! let balancers: coreloop::ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
//! let server = Server::builder()
//!     .listen(
//!         Listen::tcp(([127, 0, 0, 1], 0))
//!             .proxy_protocol(ProxyProtocol::Required)
//!             .trusted_proxies([balancers]),
//!     )
//!     .start(|_| Greeter)?;
//! # server.shutdown(std::time::Duration::ZERO)?;
//! # Ok(())
//! # }
//! ```
//!
//! The header is read in the connection's preamble, on its reactor, before
//! `on_open`: at most [`MAX_PROXY_HEADER`](crate::MAX_PROXY_HEADER)
//! bytes, within [`Builder::preamble_timeout`](crate::Builder::preamble_timeout),
//! never blocking another connection. Not a byte of it reaches the handler, and
//! not a byte of what follows it is lost, wherever the reads split them. A
//! missing, malformed, oversized or late header — or one from a peer outside
//! the trusted networks — closes the connection with
//! [`CloseReason::Proxy`](crate::CloseReason::Proxy) before the handler hears
//! of it, counted in [`ReactorStats::proxy_errors`](crate::ReactorStats::proxy_errors).
//!
//! - [`ProxyProtocol::Required`](crate::ProxyProtocol::Required) for a port
//!   only balancers reach. Use it whenever you can.
//! - [`ProxyProtocol::Optional`](crate::ProxyProtocol::Optional) detects the
//!   header from the first bytes, for a port reached both through the balancer
//!   and directly. **A direct client could then send a header of its own and
//!   claim any address**: list the balancers in
//!   [`trusted_proxies`](crate::Listen::trusted_proxies) — as HAProxy's
//!   `accept-proxy` users list theirs — so that only they are believed; from
//!   anyone else, the bytes are their own data.
//!
//! What it costs: when the header arrives with the client's first bytes (as a
//! balancer sends them once the client has spoken) nothing but the parsing —
//! the read that brings the bytes brings the header; when it arrives alone, one
//! `read`. A listener with the protocol off pays nothing. The `peers` test
//! `proxy_preamble_reads` counts those reads with `strace`; BENCHMARKS.md has
//! the CPU per connection.
//!
//! ## HAProxy
//!
//! TCP mode, `send-proxy-v2` (or `send-proxy` for version 1), health checks,
//! and — the part that keeps clients from seeing a dead instance — `retries`
//! with `option redispatch`: a connection refused by an instance that died
//! since its last health check is retried on another. Without redispatch, the
//! tests see connections fail in the second before the health checks take a
//! killed instance out; with it, none. Each instance runs with
//! `--proxy-protocol required` (the echo example) or
//! `Listen::proxy_protocol(ProxyProtocol::Required)`.
//!
//! ```text
#![doc = include_str!("../../examples/deploy/haproxy.cfg")]
//! ```
//!
//! ## nginx
//!
//! The stream module (Debian: `nginx-light` and `libnginx-mod-stream`) sends
//! version 1 with `proxy_protocol on`; `proxy_next_upstream` plays the part of
//! HAProxy's redispatch (open-source nginx has no active health checks: a
//! dead instance is found by the connections refused).
//!
//! ```text
#![doc = include_str!("../../examples/deploy/nginx.conf")]
//! ```
//!
//! Both files are in `examples/deploy/`. The `peers` tests run them as they
//! are, with their own ports, in front of two echo instances: byte-exact echo
//! through the balancer from two client addresses (127.0.0.2 and .3), both
//! instances serving and logging those addresses, one instance restarted by
//! the procedure below while connect-echo-close cycles and long-lived streams
//! run — zero failed connections — and the other killed outright, after which
//! not one new connection fails.
//!
//! ## Restarts that drop nothing
//!
//! Restarting a server — a new version, a new configuration — must not refuse
//! or reset a connection attempt, those already waiting in the accept queue
//! included, nor cut an established connection. Three known ways:
//!
//! - **`SO_REUSEPORT`**, the new process binding beside the old: the kernel
//!   spreads new connections over both listeners, and when the old one closes,
//!   the connections queued on *its* listener are reset (unless the kernel
//!   migrates them: `net.ipv4.tcp_migrate_req`, Linux 5.14 and later, off by
//!   default). Not used here for restarts.
//! - **Socket activation**: the service manager holds the listening socket
//!   across restarts; connection attempts queue in its backlog while the
//!   service restarts, and nothing is refused. But a service has one main
//!   process: the old one stops before the new one starts, so its established
//!   connections end at its shutdown (flushed, then closed). Right for short
//!   requests; coreloop serves it with [`Builder::listen_fds`](crate::Builder::listen_fds).
//! - **Handing the listening sockets over**, as HAProxy's seamless reload and
//!   Envoy's hot restart do: the new process receives the very sockets (over a
//!   Unix socket, `SCM_RIGHTS`), so their accept queues come along, and the old
//!   process finishes its connections while the new one takes the new ones.
//!   Nothing is refused, nothing is reset, nothing is cut. This is
//!   [`Builder::handover`](crate::Builder::handover), and the echo example's
//!   `--handover PATH`.
//!
//! ### The procedure
//!
//! 1. The running server was started with `handover(PATH, grace)` (echo:
//!    `--handover PATH --grace SECS`).
//! 2. Start the new one with the same listeners and the same `PATH`. It asks
//!    the running one for its listening sockets, starts its reactors on them —
//!    for a moment both accept from the same queues — and then tells the old
//!    one it serves.
//! 3. The old one stops accepting, tells every connection's handler
//!    ([`Handler::on_shutdown`](crate::Handler::on_shutdown): an HTTP server
//!    would stop keeping connections alive), goes on serving them until they
//!    close, closes what is left at `grace`, and exits (echo: status 0, its
//!    counters on stderr).
//! 4. If the new one fails before step 2 ends — a bad configuration, a crash —
//!    the old one has not been told and serves on.
//!
//! Nothing about the balancer changes: the address is the same socket. Run it
//! with any supervisor that can start a second process beside the first; with
//! systemd, a template unit gives blue/green instances:
//!
//! ```text
#![doc = include_str!("../../examples/deploy/coreloop-echo@.service")]
//! ```
//!
//! `systemctl start coreloop-echo@green` while `@blue` runs restarts the
//! server; next time, start `@blue`. For socket activation instead:
//!
//! ```text
#![doc = include_str!("../../examples/deploy/coreloop-echo.socket")]
//! ```
//!
//! ```text
#![doc = include_str!("../../examples/deploy/coreloop-echo.service")]
//! ```
//!
//! The `peers` tests check all three units with `systemd-analyze verify`, run
//! the socket unit's service under `systemd-socket-activate`, and run the
//! template's command line as blue, then green, under load.
//!
//! ## A million connections over k machines
//!
//! From the figures measured in BENCHMARKS.md ("Memory per connection"): an
//! idle connection costs a coreloop server **175 bytes** of its own memory and
//! the kernel about **5 KB** (socket, inode, file, epoll item; buffers only
//! while data is queued), and one descriptor. For 1,000,000 connections spread
//! evenly over k servers:
//!
//! | k | connections and descriptors per server | coreloop memory | kernel memory (idle) |
//! |---|---|---|---|
//! | 1 | 1,000,000 | 175 MB | 5 GB |
//! | 2 | 500,000 | 88 MB | 2.5 GB |
//! | 4 | 250,000 | 44 MB | 1.25 GB |
//! | 8 | 125,000 | 22 MB | 625 MB |
//!
//! Per server, raise the descriptor limit above its share (`LimitNOFILE=` in
//! the unit, and `fs.nr_open` past 1,048,576 for the k = 1 row); memory is not
//! the limit. Connections that carry data add their socket buffers (tens to
//! hundreds of KB each while full) — size the machines for the busy ones, not
//! the idle ones.
//!
//! The balancer holds both sides of every connection: 2,000,000 descriptors
//! and about 10 GB of kernel memory for the million (the balancer's own
//! memory per connection is its own; measure it). And its connections to the
//! servers need source ports: one balancer address reaches one server address
//! and port from at most as many ports as `net.ipv4.ip_local_port_range`
//! holds — 28,232 by default (32768–60999). A million connections from one
//! balancer address need at least 36 servers, or more source addresses on the
//! balancer (HAProxy: one `server` line per source address, with `source`), or
//! a wider port range. The same bound applies to benchmarks: BENCHMARKS.md
//! reaches 19,500 connections on one port from four client addresses.
