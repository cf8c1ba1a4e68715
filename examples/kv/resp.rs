//! RESP2, the Redis protocol: parsing requests out of the connection's input and
//! writing replies into its `Context`.
//!
//! A request is an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or an
//! inline command (`GET k\r\n`, as typed into telnet). Parsing is resumable: a
//! request that arrives over many reads is scanned once, its arguments recorded as
//! byte ranges of the input (which only grows at its end until the request is
//! consumed), so a large or slow request costs linear time. Limits and error
//! replies are Redis's.

use std::ops::Range;

use coreloop::Context;

/// Bounds on a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest bulk string (an argument), in bytes.
    pub max_bulk: usize,
    /// The most arguments in one request.
    pub max_args: usize,
}

/// The longest header line (`*N`, `$N`) or inline command Redis reads (64 KiB).
const MAX_LINE: usize = 64 * 1024;

/// A malformed request: answered with Redis's error and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    MultibulkLength,
    BulkLength,
    ExpectedDollar(u8),
    TooBigMultibulkCount,
    TooBigBulkCount,
    TooBigInline,
}

impl ProtocolError {
    /// The error reply, as Redis words it.
    pub fn write_to<M: Send + 'static>(self, cx: &mut Context<'_, M>) {
        match self {
            ProtocolError::MultibulkLength => cx.write(b"-ERR Protocol error: invalid multibulk length\r\n"),
            ProtocolError::BulkLength => cx.write(b"-ERR Protocol error: invalid bulk length\r\n"),
            ProtocolError::ExpectedDollar(got) => {
                write!(cx, "-ERR Protocol error: expected '$', got '{}'\r\n", char::from(got))
            }
            ProtocolError::TooBigMultibulkCount => cx.write(b"-ERR Protocol error: too big mbulk count string\r\n"),
            ProtocolError::TooBigBulkCount => cx.write(b"-ERR Protocol error: too big bulk count string\r\n"),
            ProtocolError::TooBigInline => cx.write(b"-ERR Protocol error: too big inline request\r\n"),
        }
    }
}

/// One request being parsed: its arguments so far, as ranges of the input.
#[derive(Debug, Default)]
pub struct Request {
    pub args: Vec<Range<usize>>,
    /// Arguments the array header announced (0 before it is read).
    expected: usize,
    /// Where parsing resumes in the input.
    pos: usize,
    /// The input must be at least this long before parsing can progress.
    need: usize,
}

impl Request {
    /// Bytes of input the complete request takes.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Forgets the request once it is consumed from the input (the argument
    /// list keeps its allocation).
    pub fn clear(&mut self) {
        self.args.clear();
        self.expected = 0;
        self.pos = 0;
        self.need = 0;
    }

    /// Parses on from where the last call stopped. `Ok(true)`: a complete
    /// request (possibly empty: `*0`, a blank line) of [`len`](Self::len)
    /// bytes; `Ok(false)`: more input is needed.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<bool, ProtocolError> {
        if buf.len() < self.need {
            return Ok(false); // nothing new to look at
        }
        if self.pos == 0 && self.expected == 0 {
            match buf.first() {
                None => return Ok(false),
                Some(b'*') => {}
                Some(_) => return self.inline(buf),
            }
            let Some((n, next)) = line_number(buf, 1, ProtocolError::TooBigMultibulkCount)? else {
                return Ok(false);
            };
            if n > limits.max_args as i64 {
                return Err(ProtocolError::MultibulkLength);
            }
            self.pos = next;
            if n <= 0 {
                return Ok(true); // an empty request: nothing to run, as Redis
            }
            self.expected = n as usize;
            self.args.reserve(self.expected.min(1024));
        }
        while self.args.len() < self.expected {
            let Some(&first) = buf.get(self.pos) else {
                self.need = self.pos + 1;
                return Ok(false);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedDollar(first));
            }
            let Some((len, start)) = line_number(buf, self.pos + 1, ProtocolError::TooBigBulkCount)? else {
                self.need = buf.len() + 1;
                return Ok(false);
            };
            if !(0..=limits.max_bulk as i64).contains(&len) {
                return Err(ProtocolError::BulkLength);
            }
            let end = start + len as usize;
            if buf.len() < end + 2 {
                self.need = end + 2; // a large argument: wait until it is all here
                return Ok(false);
            }
            self.args.push(start..end);
            self.pos = end + 2; // the CRLF after the data, skipped as Redis does
        }
        Ok(true)
    }

    /// An inline command: one line, arguments separated by blanks.
    fn inline(&mut self, buf: &[u8]) -> Result<bool, ProtocolError> {
        let Some(nl) = memchr(b'\n', buf) else {
            if buf.len() > MAX_LINE {
                return Err(ProtocolError::TooBigInline);
            }
            self.need = buf.len() + 1;
            return Ok(false);
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        let mut i = 0;
        while i < line_end {
            if buf[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < line_end && !buf[i].is_ascii_whitespace() {
                i += 1;
            }
            self.args.push(start..i);
        }
        self.pos = nl + 1;
        Ok(true)
    }
}

/// Reads the decimal number from `at` to the next CRLF: `(number, index after
/// the CRLF)`, `None` if the line is not complete yet.
fn line_number(buf: &[u8], at: usize, too_long: ProtocolError) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[at.min(buf.len())..];
    let Some(cr) = memchr(b'\r', rest) else {
        return if rest.len() > MAX_LINE { Err(too_long) } else { Ok(None) };
    };
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    let bad = match too_long {
        ProtocolError::TooBigMultibulkCount => ProtocolError::MultibulkLength,
        _ => ProtocolError::BulkLength,
    };
    let n = parse_i64(&rest[..cr]).ok_or(bad)?;
    Ok(Some((n, at + cr + 2)))
}

/// A decimal integer, as Redis's `string2ll` accepts it.
pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(i64::from(d - b'0'))?
        } else {
            n.checked_add(i64::from(d - b'0'))?
        };
    }
    Some(n)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

// Replies.

pub fn ok<M: Send + 'static>(cx: &mut Context<'_, M>) {
    cx.write(b"+OK\r\n");
}

pub fn nil<M: Send + 'static>(cx: &mut Context<'_, M>) {
    cx.write(b"$-1\r\n");
}

pub fn int<M: Send + 'static>(cx: &mut Context<'_, M>, n: i64) {
    write!(cx, ":{n}\r\n");
}

pub fn array<M: Send + 'static>(cx: &mut Context<'_, M>, len: usize) {
    write!(cx, "*{len}\r\n");
}

/// A bulk string, or nil; a large one is queued without copying (a small one
/// is copied, without touching its reference count).
pub fn bulk_or_nil<M: Send + 'static>(cx: &mut Context<'_, M>, data: Option<&bytes::Bytes>) {
    match data {
        Some(data) if data.len() >= 1024 => {
            write!(cx, "${}\r\n", data.len());
            cx.write_bytes(data.clone());
            cx.write(b"\r\n");
        }
        Some(data) => bulk_slice(cx, data),
        None => nil(cx),
    }
}

pub fn bulk_slice<M: Send + 'static>(cx: &mut Context<'_, M>, data: &[u8]) {
    write!(cx, "${}\r\n", data.len());
    cx.write(data);
    cx.write(b"\r\n");
}

/// An error reply: `-` + `message` + CRLF.
pub fn error<M: Send + 'static>(cx: &mut Context<'_, M>, message: &str) {
    cx.write(b"-");
    cx.write(message.as_bytes());
    cx.write(b"\r\n");
}

/// The frame a subscriber receives for a published message.
pub fn message_frame(channel: &[u8], payload: &[u8]) -> bytes::Bytes {
    let mut frame = Vec::with_capacity(40 + channel.len() + payload.len());
    frame.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n");
    frame.extend_from_slice(format!("${}\r\n", channel.len()).as_bytes());
    frame.extend_from_slice(channel);
    frame.extend_from_slice(format!("\r\n${}\r\n", payload.len()).as_bytes());
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 1024,
        max_args: 8,
    };

    fn args(buf: &[u8], r: &Request) -> Vec<Vec<u8>> {
        r.args.iter().map(|a| buf[a.clone()].to_vec()).collect()
    }

    #[test]
    fn every_split_of_a_request_parses_to_the_same_arguments() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        for cut in 0..buf.len() {
            let mut r = Request::default();
            assert!(!r.parse(&buf[..cut], &LIMITS).unwrap(), "cut at {cut}");
            assert!(r.parse(buf, &LIMITS).unwrap());
            assert_eq!(r.len(), buf.len());
            assert_eq!(args(buf, &r), [b"SET".to_vec(), b"k".to_vec(), b"value".to_vec()]);
        }
    }

    #[test]
    fn inline_commands_and_errors() {
        let mut r = Request::default();
        assert!(r.parse(b"GET  key\r\nPING", &LIMITS).unwrap());
        assert_eq!(args(b"GET  key\r\n", &r), [b"GET".to_vec(), b"key".to_vec()]);
        assert_eq!(r.len(), 10);
        for (bad, err) in [
            (&b"*abc\r\n"[..], ProtocolError::MultibulkLength),
            (b"*9\r\n", ProtocolError::MultibulkLength),
            (b"*1\r\n$-1\r\n", ProtocolError::BulkLength),
            (b"*1\r\n$2000\r\n", ProtocolError::BulkLength),
            (b"*1\r\nx4\r\n", ProtocolError::ExpectedDollar(b'x')),
        ] {
            assert_eq!(Request::default().parse(bad, &LIMITS), Err(err), "{bad:?}");
        }
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
    }
}
