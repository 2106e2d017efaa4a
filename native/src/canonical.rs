//! An event's canonical JSON, byte for byte what `orjson.dumps(event,
//! option=orjson.OPT_SORT_KEYS)` writes for the same parsed event: keys sorted by their
//! UTF-8 bytes, no spaces, integers as parsed, floats in orjson's layout, and strings
//! escaped as orjson escapes them (`"`, `\`, and control characters only).

use crate::json::{plain_run, Members, Str, J};
use crate::Decline;

/// About how many bytes the canonical JSON of `sent` bytes of JSON takes: spaces are
/// dropped, but a number sent in exponent form may come out longer.
pub fn room(sent: usize) -> usize {
    sent + sent / 16
}

/// Appends `value`'s canonical JSON to `out`; declines a number the Python rules read
/// otherwise (an integer past 64 bits, which orjson reads as a float; a float past
/// `f64`, which orjson refuses) and an object with a key twice (Python's dict keeps
/// the last value in the first one's place).
pub fn write_value(out: &mut Vec<u8>, value: &J<'_>) -> Result<(), Decline> {
    match value {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(true) => out.extend_from_slice(b"true"),
        J::Bool(false) => out.extend_from_slice(b"false"),
        J::Num(n) => write_number(out, n)?,
        J::Str(s) => write_text(out, s),
        J::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        J::Obj(members) => write_object(out, members)?,
    }
    Ok(())
}

pub fn write_object(out: &mut Vec<u8>, members: &Members<'_>) -> Result<(), Decline> {
    // Producers mostly send keys sorted (openlineage-python does): then as they are,
    // strictly increasing, which also says no key comes twice.
    if members
        .windows(2)
        .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
    {
        return write_members(out, members.iter().map(|(k, v)| (k, v)));
    }
    let mut sorted: Vec<(&Str<'_>, &J<'_>)> = members.iter().map(|(k, v)| (k, v)).collect();
    sorted.sort_unstable_by(|a, b| a.0.text.cmp(b.0.text));
    if sorted.windows(2).any(|w| w[0].0.text == w[1].0.text) {
        return Err(Decline);
    }
    write_members(out, sorted.into_iter())
}

/// `{"key":value,...}` in the order given.
fn write_members<'a, 'b: 'a>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'a Str<'b>, &'a J<'b>)>,
) -> Result<(), Decline> {
    out.push(b'{');
    for (i, (key, item)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_text(out, key);
        out.push(b':');
        write_value(out, item)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON number as orjson reads and writes it back.
pub enum Num {
    Int(i128),
    Float(f64),
}

/// The number `text` (as sent) is; declines what the Python rules read otherwise.
pub fn number(text: &str) -> Result<Num, Decline> {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        let x: f64 = text.parse().map_err(|_| Decline)?;
        if !x.is_finite() {
            return Err(Decline);
        }
        return Ok(Num::Float(x));
    }
    let n: i128 = text.parse().map_err(|_| Decline)?;
    // orjson keeps -2**63 .. 2**64 - 1 as an int; past that it reads a float.
    if n < i128::from(i64::MIN) || n > i128::from(u64::MAX) {
        return Err(Decline);
    }
    Ok(Num::Int(n))
}

fn write_number(out: &mut Vec<u8>, text: &str) -> Result<(), Decline> {
    match number(text)? {
        Num::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Num::Float(x) => write_float(out, x),
    }
    Ok(())
}

/// A finite float as orjson writes it: the shortest digits that read back the same,
/// positional for exponents -5 to 15 (with `.0` for a whole number), else scientific
/// with a signed exponent (`1e+16`, `1.5e-7`).
pub fn write_float(out: &mut Vec<u8>, x: f64) {
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e17`, `5e-324`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    if negative {
        out.push(b'-');
    }
    if (-5..16).contains(&exp) {
        if exp >= 0 {
            let whole = exp as usize + 1;
            for i in 0..whole {
                out.push(*digits.get(i).unwrap_or(&b'0'));
            }
            out.push(b'.');
            if digits.len() > whole {
                out.extend_from_slice(&digits[whole..]);
            } else {
                out.push(b'0');
            }
        } else {
            out.extend_from_slice(b"0.");
            for _ in 0..(-exp - 1) {
                out.push(b'0');
            }
            out.extend_from_slice(&digits);
        }
        return;
    }
    out.push(digits[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
    }
    out.push(b'e');
    if exp > 0 {
        out.push(b'+');
    }
    out.extend_from_slice(exp.to_string().as_bytes());
}

/// A string as read (`json::J::Str`): one read with no escape holds no byte that needs
/// one (the reader stops a plain run at `"`, `\` and control characters), so it is
/// written as it is.
pub fn write_text(out: &mut Vec<u8>, text: &Str<'_>) {
    if text.plain {
        out.push(b'"');
        out.extend_from_slice(text.text.as_bytes());
        out.push(b'"');
    } else {
        write_str(out, text.text);
    }
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as
/// `\b \t \n \f \r` or `\u00XX` (lower-case hex), everything else as UTF-8.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        let i = plain_run(bytes, start);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => b'u',
        };
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.push(b'"');
}
