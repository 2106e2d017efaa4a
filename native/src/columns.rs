//! A batch's warehouse rows as Arrow columns: each column's buffers (offsets, values,
//! validity; little-endian, as Arrow lays them out here) built as the events are read,
//! for `pyarrow.Array.from_buffers` on the Python side (`consumers/warehouse/native.py`).

use crate::Decline;

/// `string`: i32 offsets (from 0) and the UTF-8 bytes.
pub struct Strs {
    pub offsets: Vec<u8>,
    pub data: Vec<u8>,
    pub len: usize,
}

impl Strs {
    pub fn new() -> Self {
        Strs {
            offsets: 0_i32.to_le_bytes().to_vec(),
            data: Vec::new(),
            len: 0,
        }
    }

    /// Declines once the column passes what i32 offsets reach (2 GiB). `text` is UTF-8:
    /// a `&str`, or JSON this crate wrote from them (the canonical Payload).
    pub fn push<T: AsRef<[u8]> + ?Sized>(&mut self, text: &T) -> Result<(), Decline> {
        self.data.extend_from_slice(text.as_ref());
        let end = i32::try_from(self.data.len()).map_err(|_| Decline)?;
        self.offsets.extend_from_slice(&end.to_le_bytes());
        self.len += 1;
        Ok(())
    }
}

/// `list<string>`: i32 offsets into its items.
pub struct StrLists {
    pub offsets: Vec<u8>,
    pub items: Strs,
    pub len: usize,
}

impl StrLists {
    pub fn new() -> Self {
        StrLists {
            offsets: 0_i32.to_le_bytes().to_vec(),
            items: Strs::new(),
            len: 0,
        }
    }

    pub fn push<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<(), Decline> {
        for text in texts {
            self.items.push(text.as_ref())?;
        }
        let end = i32::try_from(self.items.len).map_err(|_| Decline)?;
        self.offsets.extend_from_slice(&end.to_le_bytes());
        self.len += 1;
        Ok(())
    }
}

/// `int64` or `timestamp[ns]`, and `uint8`: the values alone.
pub struct Fixed {
    pub values: Vec<u8>,
    pub len: usize,
}

impl Fixed {
    pub fn new() -> Self {
        Fixed {
            values: Vec::new(),
            len: 0,
        }
    }

    pub fn push_i64(&mut self, value: i64) {
        self.values.extend_from_slice(&value.to_le_bytes());
        self.len += 1;
    }

    pub fn push_u8(&mut self, value: u8) {
        self.values.push(value);
        self.len += 1;
    }
}

/// A nullable `int64`: a validity bitmap (bit set: a value) and the values (0 where null).
pub struct OptI64s {
    pub validity: Vec<u8>,
    pub values: Vec<u8>,
    pub len: usize,
    pub nulls: usize,
}

impl OptI64s {
    pub fn new() -> Self {
        OptI64s {
            validity: Vec::new(),
            values: Vec::new(),
            len: 0,
            nulls: 0,
        }
    }

    pub fn push(&mut self, value: Option<i64>) {
        if self.len.is_multiple_of(8) {
            self.validity.push(0);
        }
        match value {
            Some(v) => {
                *self.validity.last_mut().expect("a byte per eight rows") |= 1 << (self.len % 8);
                self.values.extend_from_slice(&v.to_le_bytes());
            }
            None => {
                self.nulls += 1;
                self.values.extend_from_slice(&0_i64.to_le_bytes());
            }
        }
        self.len += 1;
    }
}
