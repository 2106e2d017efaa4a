//! An event time in nanoseconds, as `consumers.warehouse.decode.event_time_ns` reads it,
//! for the forms producers send: an ISO 8601 string of ASCII digits and separators, or
//! an integer count of seconds. Anything else (a float, other whitespace, a time the
//! Python rules refuse) is declined to them.

use crate::canonical::{number, Num};
use crate::json::J;
use crate::Decline;

/// DateTime64(9) holds 1900-01-01 .. 2262-04-11.
const MIN_NS: i128 = -2_208_988_800 * 1_000_000_000;
const MAX_NS: i128 = 9_223_372_036 * 1_000_000_000;

pub fn event_time_ns(value: Option<&J<'_>>) -> Result<i64, Decline> {
    let ns = match value {
        Some(J::Str(text)) => iso_ns(text)?,
        Some(J::Num(n)) => match number(n)? {
            Num::Int(seconds) if seconds.abs() <= 9_000_000_000 => seconds * 1_000_000_000,
            _ => return Err(Decline),
        },
        _ => return Err(Decline),
    };
    if !(MIN_NS..MAX_NS).contains(&ns) {
        return Err(Decline);
    }
    Ok(ns as i64)
}

/// The bytes of a date-time, read left to right as the Python rules' pattern does.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, wanted: &[u8]) -> Option<u8> {
        let b = self.peek().filter(|b| wanted.contains(b))?;
        self.at += 1;
        Some(b)
    }

    fn digits(&mut self, max: usize) -> &[u8] {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }

    fn two(&mut self) -> Result<i64, Decline> {
        let d = self.digits(2);
        if d.len() != 2 {
            return Err(Decline);
        }
        Ok(value(d))
    }
}

fn value(digits: &[u8]) -> i64 {
    digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'))
}

fn iso_ns(text: &str) -> Result<i128, Decline> {
    // Only what the pattern's ASCII reading and Python's `strip()` agree on: any other
    // character (a Unicode digit or space, a tab) goes to the Python rules.
    let allowed = |b: &u8| b.is_ascii_digit() || b" Tt Zz+-:.,".contains(b);
    if !text.bytes().all(|b| allowed(&b)) {
        return Err(Decline);
    }
    let mut c = Cursor {
        bytes: text.trim_matches(' ').as_bytes(),
        at: 0,
    };
    let sign = c.eat(b"+-");
    let year = c.digits(11);
    if !(4..=10).contains(&year.len()) {
        return Err(Decline);
    }
    let mut year = value(year);
    if sign == Some(b'-') {
        year = -year;
    }
    c.eat(b"-").ok_or(Decline)?;
    let month = c.two()?;
    c.eat(b"-").ok_or(Decline)?;
    let day = c.two()?;
    c.eat(b"Tt ").ok_or(Decline)?;
    let hour = c.two()?;
    c.eat(b":").ok_or(Decline)?;
    let minute = c.two()?;
    let (mut second, mut nanos, mut frac_zero) = (0, 0, true);
    if c.eat(b":").is_some() {
        second = c.two()?;
        if c.eat(b".,").is_some() {
            let frac = c.digits(9);
            frac_zero = frac.iter().all(|d| *d == b'0');
            nanos = value(frac) * 10_i64.pow(9 - frac.len() as u32);
            c.digits(usize::MAX);
        }
    }
    while c.eat(b" ").is_some() {}
    let mut offset = 0;
    if c.eat(b"Zz").is_none() {
        if let Some(zone_sign) = c.eat(b"+-") {
            let mut parts = [c.two()?, 0, 0];
            for part in &mut parts[1..] {
                let colon = c.eat(b":").is_some();
                if c.peek().is_some_and(|b| b.is_ascii_digit()) {
                    *part = c.two()?;
                } else if colon {
                    return Err(Decline);
                } else {
                    break;
                }
            }
            offset = parts[0] * 3600 + parts[1] * 60 + parts[2];
            if zone_sign == b'-' {
                offset = -offset;
            }
        }
    }
    if c.at != c.bytes.len() {
        return Err(Decline);
    }
    if !(1899..=2262).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || minute > 59
        || second > 59
    {
        return Err(Decline);
    }
    let next_midnight = hour == 24 && minute == 0 && second == 0 && frac_zero;
    if hour > 23 && !next_midnight {
        return Err(Decline);
    }
    let days = days_in_month(year, month);
    let seconds = days_from_epoch(year, month, 1) * 86_400
        + (day.min(days) - 1) * 86_400
        + hour * 3600
        + minute * 60
        + second
        - offset;
    Ok(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date, proleptic Gregorian (as Python's `datetime`).
fn days_from_epoch(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
