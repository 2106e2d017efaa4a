//! lineage-hub's lineage warehouse decoder, compiled: one OpenLineage record -> the
//! cells of its warehouse rows, by the rules of `consumers/warehouse/decode.py`.
//!
//! Only the common path is here. Whatever those rules would refuse or read in a way
//! this does not (an integer past 64 bits, a lone surrogate, a float where Python's
//! `str` of it is needed, case beyond ASCII, a key twice in an object, a time in an
//! unusual form, nesting past 128 levels) is declined:
//! `decode_batch` gives it no rows and the caller runs the Python rules on it, which
//! stay the reference and alone say why a record is refused.
//!
//! Also the consumers' batch digest (`digest.rs`), the Python one's digits without a
//! Python step per record.

mod batch;
mod buffer;
mod canonical;
mod columns;
mod digest;
mod event;
mod json;
mod time;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::buffer::Buffer;
use crate::columns::{Fixed, OptI64s, StrLists, Strs};

/// The Python rules decide this record.
pub struct Decline;

/// `consumers.warehouse.decode.MAX_RECORD_BYTES`.
const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// A batch of records -> `(taken, events, io, edges)`: for each record its count of io
/// and edge rows, or None where the Python rules must decide it (it has no rows here);
/// each table as {column: buffers} for `pyarrow.Array.from_buffers`, in record order.
/// None for the whole batch when a column outgrows Arrow's 32-bit offsets. Reads
/// without holding the GIL (the consumer's event loop runs meanwhile).
#[pyfunction]
fn decode_batch<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let held: Vec<Bound<'py, PyBytes>> = records
        .iter()
        .map(|r| r.cast_into::<PyBytes>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let raws: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let built = py.detach(|| {
        let sent = raws.iter().map(|r| r.len()).sum();
        let mut batch = batch::Batch::new(raws.len(), sent);
        let mut arena = bumpalo::Bump::new();
        for raw in &raws {
            if raw.len() > MAX_RECORD_BYTES {
                batch.taken.push(None);
            } else {
                arena.reset(); // the last record's tree: its rows are in the columns
                batch.add(raw, &arena)?;
            }
        }
        Ok::<_, Decline>(batch)
    });
    let Ok(b) = built else {
        return Ok(None);
    };
    let batch::Batch {
        taken,
        events: e,
        io: i,
        edges: g,
    } = b;
    let taken = PyList::new(py, taken)?;
    let events = texts(py, &batch::EVENT_TEXTS, e.texts)?;
    events.set_item("EventTime", fixed(py, e.time)?)?;
    let io = texts(py, &batch::IO_TEXTS, i.texts)?;
    io.set_item("EventTime", fixed(py, i.time)?)?;
    io.set_item("FieldNames", lists(py, i.field_names)?)?;
    io.set_item("FieldTypes", lists(py, i.field_types)?)?;
    io.set_item("RowCount", nullable(py, i.rows)?)?;
    io.set_item("Bytes", nullable(py, i.bytes)?)?;
    io.set_item("FileCount", nullable(py, i.files)?)?;
    let edges = texts(py, &batch::EDGE_TEXTS, g.texts)?;
    edges.set_item("EventTime", fixed(py, g.time)?)?;
    edges.set_item("Masking", fixed(py, g.masking)?)?;
    let out: [Bound<'py, PyAny>; 4] = [
        taken.into_any(),
        events.into_any(),
        io.into_any(),
        edges.into_any(),
    ];
    Ok(Some(PyTuple::new(py, out)?))
}

// The columns' bytes go to Python as `Buffer`s, moved, not copied.

/// A table's text columns, {name: `strs`}, for its other columns to join.
fn texts<'py, const N: usize>(
    py: Python<'py>,
    names: &[&str; N],
    columns: [Strs; N],
) -> PyResult<Bound<'py, PyDict>> {
    let table = PyDict::new(py);
    for (name, column) in names.iter().zip(columns) {
        table.set_item(name, strs(py, column)?)?;
    }
    Ok(table)
}

/// `("s", rows, offsets, data)`.
fn strs(py: Python<'_>, c: Strs) -> PyResult<Bound<'_, PyTuple>> {
    (
        "s",
        c.len,
        Buffer::new(py, c.offsets)?,
        Buffer::new(py, c.data)?,
    )
        .into_pyobject(py)
}

/// `("f", rows, values)`: int64, timestamp[ns] or uint8, as the schema says.
fn fixed(py: Python<'_>, c: Fixed) -> PyResult<Bound<'_, PyTuple>> {
    ("f", c.len, Buffer::new(py, c.values)?).into_pyobject(py)
}

/// `("n", rows, validity, values, nulls)`.
fn nullable(py: Python<'_>, c: OptI64s) -> PyResult<Bound<'_, PyTuple>> {
    let validity = Buffer::new(py, c.validity)?;
    ("n", c.len, validity, Buffer::new(py, c.values)?, c.nulls).into_pyobject(py)
}

/// `("l", rows, offsets, items)`, the items a `strs` column.
fn lists(py: Python<'_>, c: StrLists) -> PyResult<Bound<'_, PyTuple>> {
    ("l", c.len, Buffer::new(py, c.offsets)?, strs(py, c.items)?).into_pyobject(py)
}

#[pymodule]
fn lineagehub_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(digest::batch_digest, m)?)?;
    m.add_class::<Buffer>()?;
    Ok(())
}
