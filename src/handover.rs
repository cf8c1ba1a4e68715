//! Zero-downtime restart: the running process hands its listening sockets to its
//! successor over a Unix socket, as HAProxy's seamless reload and Envoy's hot
//! restart do.
//!
//! Why this way: a listening socket carries its accept queue. Passing the socket
//! itself (`SCM_RIGHTS`) means no connection attempt ever meets a closed port,
//! and the connections already waiting in the queue are accepted by the
//! successor — where rebinding a port, even with `SO_REUSEPORT`, resets the
//! connections queued on the listener that closes. (Socket activation gets the
//! same from the service manager holding the socket; see the guide's chapter
//! "Scaling out".)
//!
//! The exchange, on the Unix socket at the configured path:
//!
//! 1. the successor connects and sends `?`;
//! 2. the running process asks its acceptor for duplicates of every listening
//!    socket and sends them, with their count as the one data byte;
//! 3. the successor starts serving on them — both processes now accept from the
//!    same sockets — binds its own handover socket at the path, and sends `!`;
//! 4. the running process stops owning its Unix socket paths (the successor
//!    serves them) and drains ([`Handle::drain`](crate::Handle::drain)): it
//!    stops accepting and finishes its connections within its grace.
//!
//! A successor that fails before step 3 just goes away: the running process
//! keeps serving, and waits for the next. A running process that is shutting
//! down already hands over nothing: the successor binds as on a first start.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    recvmsg, sendmsg,
};

use crate::inbox::{AcceptorCommand, Inbox};

/// The most listening sockets handed over at once.
pub(crate) const MAX_LISTENERS: usize = 64;

/// How long either side waits for the other at each step.
const STEP: Duration = Duration::from_secs(10);

/// A process whose listening sockets this one took over; it drains once told.
#[derive(Debug)]
pub(crate) struct Predecessor {
    stream: UnixStream,
}

impl Predecessor {
    /// Tells the predecessor that this process serves now: it drains.
    pub(crate) fn release(mut self) -> io::Result<()> {
        self.stream.write_all(b"!")
    }
}

/// Takes the listening sockets of the process serving at `path`, if any:
/// `None` when nothing listens there (the first start, or a crashed
/// predecessor's file).
pub(crate) fn take_over(path: &Path) -> io::Result<Option<(Vec<OwnedFd>, Predecessor)>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(STEP))?;
    stream.write_all(b"?")?;
    let mut count = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut count)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if received.bytes == 0 {
        log::info!(
            "coreloop: the server at {} is shutting down: nothing to take over",
            path.display()
        );
        return Ok(None);
    }
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if fds.len() != usize::from(count[0]) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} listening sockets announced, {} received", count[0], fds.len()),
        ));
    }
    Ok(Some((fds, Predecessor { stream })))
}

/// Serves the next successor from a thread, until the server stops.
#[derive(Debug)]
pub(crate) struct HandoverServer {
    path: PathBuf,
    /// Set once the listeners were handed over, or the server stops.
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HandoverServer {
    /// Listens at `path` (replacing the predecessor's file, or a stale one) for
    /// a successor; on a handover, calls `drain`.
    pub(crate) fn start(
        path: &Path,
        acceptor: Arc<Inbox<AcceptorCommand>>,
        drain: Box<dyn FnOnce() + Send>,
    ) -> io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                let e = "something other than a socket is there; it is left alone";
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, e));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen there for a successor: {e}")))?;
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = Arc::clone(&done);
            std::thread::Builder::new()
                .name("coreloop-handover".into())
                .spawn(move || serve(listener, &acceptor, drain, &done))?
        };
        Ok(Self {
            path: path.to_path_buf(),
            done,
            thread: Some(thread),
        })
    }

    /// Stops serving successors (the server has stopped). The path is removed
    /// unless a successor has taken it over.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        if !self.done.swap(true, Ordering::AcqRel) {
            // Wake the thread from `accept`; it sees `done` and ends.
            let _ = UnixStream::connect(&self.path);
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = thread.join();
    }
}

impl Drop for HandoverServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: UnixListener,
    acceptor: &Inbox<AcceptorCommand>,
    drain: Box<dyn FnOnce() + Send>,
    done: &AtomicBool,
) {
    for stream in listener.incoming() {
        if done.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        match hand_over(&mut stream, acceptor) {
            Ok(true) => {
                log::info!("coreloop: listening sockets handed over to a successor; draining");
                done.store(true, Ordering::Release);
                let _ = acceptor.push_control(AcceptorCommand::Disown);
                drain();
                return;
            }
            Ok(false) => return, // the acceptor has stopped: nothing to hand over
            Err(e) => log::warn!("coreloop: a successor's takeover failed: {e}; serving on"),
        }
    }
}

/// One exchange with a successor. `Ok(true)`: it serves now.
fn hand_over(stream: &mut UnixStream, acceptor: &Inbox<AcceptorCommand>) -> io::Result<bool> {
    stream.set_read_timeout(Some(STEP))?;
    let mut ask = [0u8; 1];
    stream.read_exact(&mut ask)?;
    if ask != *b"?" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a takeover request"));
    }
    let (reply, answer) = std::sync::mpsc::channel();
    if acceptor.push_control(AcceptorCommand::Handover(reply)).is_err() {
        return Ok(false);
    }
    let fds = answer
        .recv_timeout(STEP)
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the acceptor did not answer"))??;
    if fds.len() > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many listening sockets",
        ));
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&borrowed));
    let count = [fds.len() as u8];
    sendmsg(&*stream, &[IoSlice::new(&count)], &mut control, SendFlags::empty())?;
    drop(borrowed);
    drop(fds); // the successor holds its own descriptors now
    // Wait for the successor to serve; a long start (building caches, say) is
    // allowed the whole step.
    let mut go = [0u8; 1];
    stream.read_exact(&mut go)?;
    Ok(go == *b"!")
}
