//! A column's bytes handed to Python without a copy: a read-only buffer (the buffer
//! protocol) that owns the `Vec` it was built in, for `pyarrow.py_buffer`, which keeps
//! it alive as long as an Arrow array uses it. Before, each column was copied into a
//! new `bytes` while the GIL was held: a batch's ~6 KB an event copied again, into
//! pages the kernel had to fault in (measured: two page faults an event with the
//! copies, none without, the allocator then reusing the last batch's memory).

use std::ffi::{c_int, c_void};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Read-only bytes, never changed after they are made (so the pointer a view holds
/// stays valid while the view holds this object, which `PyBuffer_FillInfo` ensures).
#[pyclass(frozen, module = "lineagehub_native")]
pub struct Buffer {
    data: Vec<u8>,
}

impl Buffer {
    pub fn new<'py>(py: Python<'py>, data: Vec<u8>) -> PyResult<Bound<'py, Buffer>> {
        Bound::new(py, Buffer { data })
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// Called by Python with a view to fill (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no view to fill"));
        }
        let data = &slf.get().data;
        // Fills a one-dimensional byte view of `data`, refuses a writable one, and
        // takes a reference to `slf` for the view (released with it).
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut c_void,
                data.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// # Safety
    /// Called by Python when a view is released; nothing is held per view.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
