//! The per-reactor staging buffer that callbacks write into.
//!
//! Writes made during one callback collect here and reach the socket with one
//! `write` (or one `writev` when `Bytes` were passed without copying). Whatever the
//! socket does not take is moved into the connection's own queue, so a connection
//! owns output memory only while the socket is full.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

/// The most slices handed to one `writev`.
pub(crate) const MAX_IOV: usize = 64;

/// Below this size a `Bytes` is copied into the staging buffer rather than kept as a
/// separate slice: one copy of a small buffer is cheaper than another iovec.
const COPY_BELOW: usize = 1024;

/// Above this capacity the staging buffer is shrunk after use, so one huge write does
/// not pin memory for the reactor's lifetime.
const KEEP_CAPACITY: usize = 256 * 1024;

#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    bytes: Vec<u8>,
    /// `(at, bytes)`: `bytes` goes after `self.bytes[..at]`.
    segs: Vec<(usize, Bytes)>,
    len: usize,
}

impl OutBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.len += data.len();
    }

    pub(crate) fn write_bytes(&mut self, data: Bytes) {
        if data.len() < COPY_BELOW {
            self.write(&data);
        } else {
            self.len += data.len();
            self.segs.push((self.bytes.len(), data));
        }
    }

    /// Fills `iov` with the first slices, skipping `skip` bytes; returns how many.
    pub(crate) fn slices<'a>(&'a self, skip: usize, iov: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut n = 0;
        let mut skip = skip;
        self.for_each_part(|part| {
            if skip >= part.len() {
                skip -= part.len();
                return true;
            }
            iov[n] = IoSlice::new(&part[skip..]);
            skip = 0;
            n += 1;
            n < MAX_IOV
        });
        n
    }

    /// The single contiguous buffer, when no `Bytes` slice was added (the common case:
    /// then a plain `write` is used).
    pub(crate) fn as_contiguous(&self) -> Option<&[u8]> {
        self.segs.is_empty().then_some(&self.bytes[..])
    }

    /// Moves everything after the first `skip` bytes into `queue`, then clears.
    pub(crate) fn queue_rest(&mut self, skip: usize, queue: &mut VecDeque<Bytes>) {
        let mut skip = skip;
        let mut pos = 0;
        for (at, seg) in &self.segs {
            let run = &self.bytes[pos..*at];
            pos = *at;
            push_part_from(queue, run, &mut skip, None);
            push_part_from(queue, seg, &mut skip, Some(seg));
        }
        push_part_from(queue, &self.bytes[pos..], &mut skip, None);
        self.clear();
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.segs.clear();
        self.len = 0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
    }

    fn for_each_part<'a>(&'a self, mut f: impl FnMut(&'a [u8]) -> bool) {
        let mut pos = 0;
        for (at, seg) in &self.segs {
            if *at > pos && !f(&self.bytes[pos..*at]) {
                return;
            }
            pos = *at;
            if !f(seg) {
                return;
            }
        }
        if pos < self.bytes.len() {
            f(&self.bytes[pos..]);
        }
    }
}

/// Pushes `part` minus the leading `skip` bytes (consuming them from `skip`), sharing
/// `owned` when given instead of copying.
fn push_part_from(queue: &mut VecDeque<Bytes>, part: &[u8], skip: &mut usize, owned: Option<&Bytes>) {
    if *skip >= part.len() {
        *skip -= part.len();
        return;
    }
    let from = std::mem::take(skip);
    queue.push_back(match owned {
        Some(b) => b.slice(from..),
        None => Bytes::copy_from_slice(&part[from..]),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(q: &VecDeque<Bytes>) -> Vec<u8> {
        q.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn queue_rest_keeps_order_across_copied_and_shared_parts() {
        let mut out = OutBuf::default();
        out.write(b"ab");
        out.write_bytes(Bytes::from(vec![b'x'; 2000]));
        out.write(b"cd");
        let mut expect = b"ab".to_vec();
        expect.extend(std::iter::repeat_n(b'x', 2000));
        expect.extend(b"cd");
        assert_eq!(out.len(), expect.len());
        for skip in [0, 1, 2, 3, 2001, 2002, 2003] {
            let mut o = OutBuf::default();
            o.write(b"ab");
            o.write_bytes(Bytes::from(vec![b'x'; 2000]));
            o.write(b"cd");
            let mut q = VecDeque::new();
            o.queue_rest(skip, &mut q);
            assert_eq!(flatten(&q), expect[skip..], "skip {skip}");
            assert!(o.is_empty());
        }
    }

    #[test]
    fn slices_skip_into_the_middle() {
        let mut out = OutBuf::default();
        out.write(b"hello ");
        out.write_bytes(Bytes::from(vec![b'w'; 1500]));
        out.write(b"!");
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = out.slices(3, &mut iov);
        let joined: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined.len(), out.len() - 3);
        assert_eq!(&joined[..3], b"lo ");
        assert!(out.as_contiguous().is_none());
    }
}
