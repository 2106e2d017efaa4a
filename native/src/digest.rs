//! `consumers.otel.consumer.batch_digest`, the same hex digits: what a batch of Kafka
//! records holds, for the consumers' insert tokens and replay markers. SHA-256 (the
//! CPU's SHA instructions where it has them) over, for each record,
//! `<offset>:<timestamp>:<key size>:<value size>:` (a size is -1 for None), its key,
//! then its value; the first 12 bytes, in lower-case hex.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyString};
use sha2::{Digest, Sha256};

/// A key or a value: its bytes, or None.
type Held<'py> = Option<Bound<'py, PyBytes>>;

/// One record's part of the digest, borrowed from its Python objects.
struct Part<'a> {
    head: &'a str,
    key: &'a [u8],
    value: &'a [u8],
}

/// The batch's digest, or None when a record is not as aiokafka gives one (an `int`
/// offset and timestamp, a key and a value each `bytes` or None): the Python function
/// then decides, as it always did. Hashes without holding the GIL.
#[pyfunction]
pub fn batch_digest(py: Python<'_>, records: &Bound<'_, PyList>) -> PyResult<Option<String>> {
    // Per record: its head (`offset:timestamp:key size:value size:`), key and value.
    let mut held: Vec<(String, Held<'_>, Held<'_>)> = Vec::with_capacity(records.len());
    for record in records.iter() {
        let offset = int(&record, intern!(py, "offset"), None)?;
        let stamp = int(&record, intern!(py, "timestamp"), Some(0))?;
        let (Some(offset), Some(stamp)) = (offset, stamp) else {
            return Ok(None);
        };
        let key = bytes(&record, intern!(py, "key"))?;
        let value = bytes(&record, intern!(py, "value"))?;
        let (Some(key), Some(value)) = (key, value) else {
            return Ok(None);
        };
        let size = |b: &Held<'_>| b.as_ref().map_or(-1, |b| b.as_bytes().len() as i64);
        let head = format!("{offset}:{stamp}:{}:{}:", size(&key), size(&value));
        held.push((head, key, value));
    }
    let parts: Vec<Part<'_>> = held
        .iter()
        .map(|(head, key, value)| Part {
            head,
            key: key.as_ref().map_or(&[], |b| b.as_bytes()),
            value: value.as_ref().map_or(&[], |b| b.as_bytes()),
        })
        .collect();
    Ok(Some(py.detach(|| digest(&parts))))
}

fn digest(parts: &[Part<'_>]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.head.as_bytes());
        h.update(part.key);
        h.update(part.value);
    }
    let sum = h.finalize();
    let mut out = String::with_capacity(24);
    for byte in &sum[..12] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The record's attribute `name` when it is exactly an `int` (Python may format a bool
/// or an int subclass otherwise); `missing` when it has none (the Python function reads
/// a missing timestamp as 0, and fails on a missing offset).
fn int(
    record: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    missing: Option<i128>,
) -> PyResult<Option<i128>> {
    let Some(value) = record.getattr_opt(name)? else {
        return Ok(missing);
    };
    if !value.is_exact_instance_of::<PyInt>() {
        return Ok(None);
    }
    Ok(value.extract::<i128>().ok())
}

/// Some(the attribute) when it is exactly `bytes` or None; None for anything else.
fn bytes<'py>(
    record: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Held<'py>>> {
    let value = record.getattr(name)?;
    if value.is_none() {
        return Ok(Some(None));
    }
    if !value.is_exact_instance_of::<PyBytes>() {
        return Ok(None);
    }
    Ok(Some(Some(value.cast_into::<PyBytes>()?)))
}
