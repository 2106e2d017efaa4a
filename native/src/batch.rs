//! A batch of records -> the three warehouse tables' columns, each record taken (its
//! rows appended whole) or declined (none of its rows; the Python rules decide it).
//! Column names are the DDL's (`consumers/warehouse/ddl.py`); the Python side checks
//! that every column its schema has comes from here, and no other.

use bumpalo::Bump;

use crate::canonical;
use crate::columns::{Fixed, OptI64s, StrLists, Strs};
use crate::event::{decode_event, Decoded};
use crate::json;
use crate::Decline;

pub const EVENT_TEXTS: [&str; 17] = [
    "EventHash",
    "Kind",
    "EventType",
    "RunId",
    "JobNamespace",
    "JobName",
    "ParentRunId",
    "ParentJobNamespace",
    "ParentJobName",
    "RootRunId",
    "RootJobNamespace",
    "RootJobName",
    "TraceId",
    "Producer",
    "SchemaURL",
    "ErrorMessage",
    "Payload",
];
pub const IO_TEXTS: [&str; 9] = [
    "EventHash",
    "EventType",
    "RunId",
    "JobNamespace",
    "JobName",
    "Direction",
    "DatasetNamespace",
    "DatasetName",
    "SchemaHash",
];
pub const EDGE_TEXTS: [&str; 10] = [
    "Src",
    "Dst",
    "Kind",
    "RunId",
    "EventHash",
    "JobNamespace",
    "JobName",
    "TransformType",
    "TransformSubtype",
    "TransformDescription",
];

pub struct Events {
    pub texts: [Strs; 17],
    pub time: Fixed,
}

pub struct Io {
    pub texts: [Strs; 9],
    pub time: Fixed,
    pub field_names: StrLists,
    pub field_types: StrLists,
    pub rows: OptI64s,
    pub bytes: OptI64s,
    pub files: OptI64s,
}

pub struct Edges {
    pub texts: [Strs; 10],
    pub time: Fixed,
    pub masking: Fixed,
}

pub struct Batch {
    /// Per record: its io and edge rows (its event has one), or None: declined.
    pub taken: Vec<Option<(usize, usize)>>,
    pub events: Events,
    pub io: Io,
    pub edges: Edges,
}

impl Batch {
    /// Room for `records` records of `sent` bytes in all: the Payload column holds about
    /// that many bytes (each event's canonical JSON), so it is not grown as it fills.
    pub fn new(records: usize, sent: usize) -> Self {
        let mut texts: [Strs; 17] = std::array::from_fn(|_| Strs::new());
        let [.., payload] = &mut texts;
        payload.data.reserve(canonical::room(sent));
        payload
            .offsets
            .reserve(std::mem::size_of::<i32>() * records);
        Batch {
            taken: Vec::with_capacity(records),
            events: Events {
                texts,
                time: Fixed::new(),
            },
            io: Io {
                texts: std::array::from_fn(|_| Strs::new()),
                time: Fixed::new(),
                field_names: StrLists::new(),
                field_types: StrLists::new(),
                rows: OptI64s::new(),
                bytes: OptI64s::new(),
                files: OptI64s::new(),
            },
            edges: Edges {
                texts: std::array::from_fn(|_| Strs::new()),
                time: Fixed::new(),
                masking: Fixed::new(),
            },
        }
    }

    /// Reads `raw` (its tree in `arena`) and appends its rows; a declined record appends
    /// none. Err only when a column outgrows its offsets: the whole batch goes to the
    /// Python rules.
    pub fn add(&mut self, raw: &[u8], arena: &Bump) -> Result<(), Decline> {
        let Ok(event) = json::parse(raw, arena) else {
            self.taken.push(None);
            return Ok(());
        };
        let Ok(decoded) = decode_event(&event, raw.len(), arena) else {
            self.taken.push(None);
            return Ok(());
        };
        self.append(&decoded)?;
        self.taken
            .push(Some((decoded.io.len(), decoded.links.len())));
        Ok(())
    }

    fn append(&mut self, d: &Decoded<'_>) -> Result<(), Decline> {
        let c = &d.cells;
        let event_texts: [&str; 16] = [
            &c.hash,
            c.kind,
            &c.event_type,
            &c.run_id,
            &c.job_ns,
            &c.job_name,
            &c.parent_run_id,
            &c.parent_job_ns,
            &c.parent_job_name,
            &c.root_run_id,
            &c.root_job_ns,
            &c.root_job_name,
            &c.trace_id,
            &c.producer,
            &c.schema_url,
            c.error,
        ];
        // The last column, Payload: the canonical JSON, written from the event's texts
        // (so UTF-8 already).
        let [cells @ .., payload] = &mut self.events.texts;
        for (column, text) in cells.iter_mut().zip(event_texts) {
            column.push(text)?;
        }
        payload.push(&d.canonical)?;
        self.events.time.push_i64(c.time);
        // What an io or edge row repeats from its event.
        let (hash, run_id, job_ns, job_name) = (&c.hash, &c.run_id, &c.job_ns, &c.job_name);
        for r in &d.io {
            let texts: [&str; 9] = [
                hash,
                &c.event_type,
                run_id,
                job_ns,
                job_name,
                r.direction,
                &r.namespace,
                &r.name,
                &r.schema_hash,
            ];
            for (column, text) in self.io.texts.iter_mut().zip(texts) {
                column.push(text)?;
            }
            self.io.time.push_i64(c.time);
            self.io.field_names.push(&r.field_names)?;
            self.io.field_types.push(&r.field_types)?;
            self.io.rows.push(r.rows);
            self.io.bytes.push(r.bytes);
            self.io.files.push(r.files);
        }
        for (src, dst, kind, transform, subtype, description, masking) in &d.links {
            let texts: [&str; 10] = [
                src,
                dst,
                kind,
                run_id,
                hash,
                job_ns,
                job_name,
                transform,
                subtype,
                description,
            ];
            for (column, text) in self.edges.texts.iter_mut().zip(texts) {
                column.push(text)?;
            }
            self.edges.time.push_i64(c.time);
            self.edges.masking.push_u8(*masking);
        }
        Ok(())
    }
}
