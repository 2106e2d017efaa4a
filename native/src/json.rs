//! A strict JSON reader (RFC 8259) into a tree that borrows the record's text, its
//! arrays and objects (and any string with an escape) in an arena the batch reuses.
//!
//! Written here, not taken from a crate: serde_json's `Value` spends ~30-45 us on a
//! 5 KB event building a map per object (more than the whole Python decoding), and the
//! SIMD reader tried took invalid UTF-8 as text. This one keeps an object's members
//! as sent (order and all), a number as its text, and a string without escapes as a
//! slice of the record. What it reads, orjson reads the same (tested against it);
//! whatever it does not take (invalid JSON, a lone surrogate, nesting past `MAX_DEPTH`)
//! is declined, and the Python rules decide.

use bumpalo::collections::{String as BumpString, Vec as BumpVec};
use bumpalo::Bump;

use crate::Decline;

/// A JSON value. Members of an object in the order sent; duplicate keys are kept here
/// and declined by the canonical writer, which sees every object.
#[derive(Clone, Copy)]
pub enum J<'a> {
    Null,
    Bool(bool),
    Num(&'a str),
    Str(Str<'a>),
    Arr(&'a [J<'a>]),
    Obj(&'a Members<'a>),
}

pub type Members<'a> = [(Str<'a>, J<'a>)];

/// A string's text, and whether it was sent without an escape (then its bytes need
/// none: `canonical::write_text`).
#[derive(Clone, Copy)]
pub struct Str<'a> {
    pub text: &'a str,
    pub plain: bool,
}

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.text
    }
}

impl std::fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text)
    }
}

/// The member `key` of an object (the first, after the canonical writer has declined
/// an object with a key twice).
pub fn get<'b, 'a>(members: &'b Members<'a>, key: &str) -> Option<&'b J<'a>> {
    members.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
}

/// Deeper than this goes to the Python rules (orjson itself takes 1024 levels).
const MAX_DEPTH: usize = 128;

/// `raw` read into `arena`.
pub fn parse<'a>(raw: &'a [u8], arena: &'a Bump) -> Result<J<'a>, Decline> {
    let text = std::str::from_utf8(raw).map_err(|_| Decline)?;
    let mut r = Reader {
        text,
        bytes: raw,
        at: 0,
        arena,
    };
    let value = r.value(0)?;
    r.space();
    if r.at != raw.len() {
        return Err(Decline);
    }
    Ok(value)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    arena: &'a Bump,
}

impl<'a> Reader<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn next(&mut self) -> Result<u8, Decline> {
        let b = *self.bytes.get(self.at).ok_or(Decline)?;
        self.at += 1;
        Ok(b)
    }

    fn literal(&mut self, rest: &[u8], value: J<'a>) -> Result<J<'a>, Decline> {
        if !self.bytes[self.at..].starts_with(rest) {
            return Err(Decline);
        }
        self.at += rest.len();
        Ok(value)
    }

    fn value(&mut self, depth: usize) -> Result<J<'a>, Decline> {
        self.space();
        match self.next()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => Ok(J::Str(self.string()?)),
            b't' => self.literal(b"rue", J::Bool(true)),
            b'f' => self.literal(b"alse", J::Bool(false)),
            b'n' => self.literal(b"ull", J::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Decline),
        }
    }

    fn object(&mut self, depth: usize) -> Result<J<'a>, Decline> {
        if depth > MAX_DEPTH {
            return Err(Decline);
        }
        let mut members = BumpVec::with_capacity_in(8, self.arena);
        self.space();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(J::Obj(members.into_bump_slice()));
        }
        loop {
            self.space();
            if self.next()? != b'"' {
                return Err(Decline);
            }
            let key = self.string()?;
            self.space();
            if self.next()? != b':' {
                return Err(Decline);
            }
            let value = self.value(depth)?;
            members.push((key, value));
            self.space();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(J::Obj(members.into_bump_slice())),
                _ => return Err(Decline),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<J<'a>, Decline> {
        if depth > MAX_DEPTH {
            return Err(Decline);
        }
        let mut items = BumpVec::with_capacity_in(4, self.arena);
        self.space();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(J::Arr(items.into_bump_slice()));
        }
        loop {
            items.push(self.value(depth)?);
            self.space();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(J::Arr(items.into_bump_slice())),
                _ => return Err(Decline),
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, its first byte read.
    fn number(&mut self) -> Result<J<'a>, Decline> {
        let start = self.at - 1;
        let mut first = self.bytes[start];
        if first == b'-' {
            first = self.next()?;
        }
        match first {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return Err(Decline),
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(J::Num(&self.text[start..self.at]))
    }

    fn digits(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Decline> {
        let start = self.at;
        self.digits();
        if self.at == start {
            return Err(Decline);
        }
        Ok(())
    }

    /// A string's text, its opening quote read: a slice of the record when it has no
    /// escape. Control characters must be escaped; a lone surrogate declines.
    fn string(&mut self) -> Result<Str<'a>, Decline> {
        let start = self.at;
        self.at = plain_run(self.bytes, self.at);
        match self.next()? {
            b'"' => {
                let text = &self.text[start..self.at - 1];
                return Ok(Str { text, plain: true });
            }
            b'\\' => {}
            _ => return Err(Decline), // a control character
        }
        let mut out = BumpString::from_str_in(&self.text[start..self.at - 1], self.arena);
        loop {
            // An escape's backslash is read.
            match self.next()? {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => out.push(self.unicode()?),
                _ => return Err(Decline),
            }
            let run = self.at;
            self.at = plain_run(self.bytes, self.at);
            out.push_str(&self.text[run..self.at]);
            match self.next()? {
                b'"' => {
                    return Ok(Str {
                        text: out.into_bump_str(),
                        plain: false,
                    })
                }
                b'\\' => {}
                _ => return Err(Decline),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Decline> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or(Decline)?;
        let mut n = 0;
        for d in digits {
            n = n * 16 + char::from(*d).to_digit(16).ok_or(Decline)?;
        }
        self.at += 4;
        Ok(n)
    }

    /// The character of a `\uXXXX` escape (a surrogate pair's two escapes).
    fn unicode(&mut self) -> Result<char, Decline> {
        let unit = self.hex4()?;
        let code = match unit {
            0xd800..=0xdbff => {
                if !self.bytes[self.at..].starts_with(b"\\u") {
                    return Err(Decline);
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err(Decline);
                }
                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(Decline),
            _ => unit,
        };
        char::from_u32(code).ok_or(Decline)
    }
}

/// Where the run of bytes from `at` that a string holds as they are ends: at the first
/// `"`, `\\` or control character (or the end). Eight bytes at a time: a byte is flagged
/// where it is zero after the XOR with `"` or `\\`, or below 0x20.
pub fn plain_run(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        // A byte is zero, or below 0x20: (v - k) sets its high bit where v < k, for a
        // byte whose own high bit is clear (`!x`).
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if hit & HIGH != 0 {
            // The lowest flagged byte is a real one (a borrow only flags bytes above it).
            return at + (hit & HIGH).trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        at += 1;
    }
    at
}
