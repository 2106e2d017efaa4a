//! One OpenLineage event -> the cells of its warehouse rows, by the rules of
//! `consumers/warehouse/decode.py` (the reference: each function here names the one it
//! follows). Only the common path: wherever those rules would raise, format a float
//! as Python's `str`, or change case beyond ASCII, this declines and the Python rules
//! decide, so what it returns is always what they return.

use std::borrow::Cow;

use bumpalo::collections::String as BumpString;
use bumpalo::Bump;

use crate::canonical::{self, number, write_object, write_str, Num};
use crate::json::{get, Members, J};
use crate::time::event_time_ns;
use crate::Decline;

/// An object's members; every borrow below (`'a`) is of the parsed event.
type Obj<'a> = Members<'a>;
type Text<'a> = Cow<'a, str>;

/// `lineage_events`' cells but the Payload, in `decode.EVENT_CELLS` order.
pub struct EventCells<'a> {
    pub hash: String,
    pub kind: &'static str,
    pub event_type: String,
    pub time: i64,
    pub run_id: String,
    pub job_ns: Text<'a>,
    pub job_name: Text<'a>,
    pub parent_run_id: String,
    pub parent_job_ns: Text<'a>,
    pub parent_job_name: Text<'a>,
    pub root_run_id: String,
    pub root_job_ns: Text<'a>,
    pub root_job_name: Text<'a>,
    pub trace_id: String,
    pub producer: Text<'a>,
    pub schema_url: Text<'a>,
    pub error: &'a str,
}

/// A `lineage_io` row's own cells (`decode.IoCells`).
pub struct IoCells<'a> {
    pub direction: &'static str,
    pub namespace: Text<'a>,
    pub name: Text<'a>,
    pub schema_hash: String,
    pub field_names: Vec<&'a str>,
    pub field_types: Vec<&'a str>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub files: Option<i64>,
}

/// An edge (`decode.Link`): Src, Dst, Kind, TransformType, TransformSubtype,
/// TransformDescription, Masking.
pub type Link<'a> = (
    &'a str,
    &'a str,
    &'static str,
    &'a str,
    &'a str,
    &'a str,
    u8,
);

pub struct Decoded<'a> {
    pub cells: EventCells<'a>,
    pub canonical: Vec<u8>,
    pub io: Vec<IoCells<'a>>,
    pub links: Vec<Link<'a>>,
}

/// `decode._obj`: the object's members, or none for anything else.
fn obj<'a>(value: Option<&'a J<'_>>) -> &'a Obj<'a> {
    match value {
        Some(J::Obj(members)) => members,
        _ => &[],
    }
}

/// `decode._scalar_text`: None for what is no scalar; a float (Python's `repr`) declines.
fn scalar_text<'a>(value: Option<&'a J<'_>>) -> Result<Option<Text<'a>>, Decline> {
    Ok(match value {
        Some(J::Str(s)) => Some(Cow::Borrowed(s.text)),
        Some(J::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Some(J::Num(n)) => match number(n)? {
            Num::Int(i) => Some(Cow::Owned(i.to_string())),
            Num::Float(_) => return Err(Decline),
        },
        _ => None,
    })
}

/// `decode._text` (not required): the scalar's text at `path`, or "".
fn text<'a>(node: &'a Obj<'a>, path: &[&str]) -> Result<Text<'a>, Decline> {
    let mut at = node;
    let (last, parents) = path.split_last().expect("a path");
    for key in parents {
        match get(at, key) {
            Some(J::Obj(child)) => at = child,
            _ => return Ok(Cow::Borrowed("")),
        }
    }
    Ok(scalar_text(get(at, last))?.unwrap_or(Cow::Borrowed("")))
}

/// Python's `str.lower()`, for ASCII.
fn lower(text: &str) -> Result<String, Decline> {
    if !text.is_ascii() {
        return Err(Decline);
    }
    Ok(text.to_ascii_lowercase())
}

/// Whether Python's `text.strip()` is empty (what `str.isspace` holds in ASCII includes
/// \x1c-\x1f); a text of only spaces and non-ASCII declines (Unicode's spaces differ).
fn blank(text: &str) -> Result<bool, Decline> {
    let space = |b: u8| matches!(b, b' ' | b'\t'..=b'\r' | 0x1c..=0x1f);
    if text.bytes().any(|b| b.is_ascii() && !space(b)) {
        return Ok(false);
    }
    if text.is_ascii() {
        Ok(true)
    } else {
        Err(Decline)
    }
}

/// Python's `text[:limit]` (in characters).
fn clip(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    match text.char_indices().nth(limit) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

fn clip_text(text: Text<'_>, limit: usize) -> Text<'_> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(clip(s, limit)),
        Cow::Owned(s) => Cow::Owned(clip(&s, limit).to_string()),
    }
}

/// `decode._clip` for a cell a producer may send as anything: a string clipped; what
/// Python reads as false, ""; any other value (its Python `str`) declines.
#[allow(clippy::redundant_guards)] // `x == 0.0` holds for -0.0 too, as Python's `not x`
fn clip_cell<'a>(value: Option<&'a J<'_>>, limit: usize) -> Result<&'a str, Decline> {
    match value {
        Some(J::Str(s)) => Ok(clip(s, limit)),
        None | Some(J::Null) | Some(J::Bool(false)) => Ok(""),
        Some(J::Arr(a)) if a.is_empty() => Ok(""),
        Some(J::Obj(o)) if o.is_empty() => Ok(""),
        Some(J::Num(n)) => match number(n)? {
            Num::Int(0) => Ok(""),
            Num::Float(x) if x == 0.0 => Ok(""),
            _ => Err(Decline),
        },
        _ => Err(Decline),
    }
}

/// BLAKE2b with a 16-byte digest, in lower-case hex (`hashlib.blake2b(data,
/// digest_size=16).hexdigest()`).
fn digest(data: &[u8]) -> String {
    blake2b_simd::Params::new()
        .hash_length(16)
        .hash(data)
        .to_hex()
        .to_string()
}

/// `openlineage_schema.event_kind`: by the part of `schemaURL` from its last `/`.
fn kind(event: &Obj<'_>) -> &'static str {
    if let Some(J::Str(url)) = get(event, "schemaURL") {
        if let Some(at) = url.rfind('/') {
            match &url[at..] {
                "/DatasetEvent" => return "dataset",
                "/JobEvent" => return "job",
                _ => {}
            }
        }
    }
    "run"
}

/// `parts` as one text in `arena`: a node id without `format!`'s machinery.
fn join<'a>(arena: &'a Bump, parts: &[&str]) -> &'a str {
    let mut text = BumpString::with_capacity_in(parts.iter().map(|p| p.len()).sum(), arena);
    for part in parts {
        text.push_str(part);
    }
    text.into_bump_str()
}

/// The event's rows, borrowing from `event` (parsed by the caller from a record of
/// `sent` bytes) and `arena` (the node ids and names they are made of).
pub fn decode_event<'a>(
    event: &'a J<'a>,
    sent: usize,
    arena: &'a Bump,
) -> Result<Decoded<'a>, Decline> {
    let J::Obj(event) = event else {
        return Err(Decline);
    };
    // First: it declines an object with a key twice, so a look-up below finds the one.
    // Its canonical JSON is about the record's size: one allocation, mostly.
    let mut canonical = Vec::with_capacity(canonical::room(sent) + 64);
    write_object(&mut canonical, event)?;
    let kind = kind(event);
    let hash = digest(&canonical);
    let time = event_time_ns(get(event, "eventTime"))?;
    let event_type = if kind == "run" {
        let t = text(event, &["eventType"])?;
        if !t.is_ascii() {
            return Err(Decline);
        }
        t.to_ascii_uppercase()
    } else {
        String::new()
    };
    let run = obj(get(event, "run"));
    if kind == "run" && scalar_text(get(run, "runId"))?.is_none() {
        return Err(Decline);
    }
    let run_id = lower(&text(event, &["run", "runId"])?)?;
    let (job_ns, job_name) = if kind == "dataset" {
        (Cow::Borrowed(""), Cow::Borrowed(""))
    } else {
        let job = obj(get(event, "job"));
        let ns = scalar_text(get(job, "namespace"))?.ok_or(Decline)?;
        let name = scalar_text(get(job, "name"))?.ok_or(Decline)?;
        (ns, name)
    };
    let job = if !blank(&job_ns)? && !blank(&job_name)? {
        join(arena, &["job:", &job_ns, ":", &job_name])
    } else {
        ""
    };
    let (io, links) = io_and_links(event, kind, job, arena)?;

    let run_facets = obj(get(run, "facets"));
    let parent = obj(get(run_facets, "parent"));
    let root = obj(get(parent, "root"));
    let error = match get(obj(get(run_facets, "errorMessage")), "message") {
        Some(J::Str(s)) => clip(s, 4000),
        _ => "",
    };
    let cells = EventCells {
        hash,
        kind,
        event_type,
        time,
        run_id,
        job_ns,
        job_name,
        parent_run_id: lower(&text(parent, &["run", "runId"])?)?,
        parent_job_ns: text(parent, &["job", "namespace"])?,
        parent_job_name: text(parent, &["job", "name"])?,
        root_run_id: lower(&text(root, &["run", "runId"])?)?,
        root_job_ns: text(root, &["job", "namespace"])?,
        root_job_name: text(root, &["job", "name"])?,
        trace_id: trace_id(run_facets),
        producer: clip_text(text(event, &["producer"])?, 512),
        schema_url: clip_text(text(event, &["schemaURL"])?, 512),
        error,
    };
    Ok(Decoded {
        cells,
        canonical,
        io,
        links,
    })
}

fn hex(text: &[u8]) -> bool {
    text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Python's `re.match(pattern + "$", text)`: `$` also matches before a final newline.
fn body(text: &str) -> &[u8] {
    text.strip_suffix('\n').unwrap_or(text).as_bytes()
}

/// `decode._trace_id`: a W3C trace id carried by any run facet.
fn trace_id(run_facets: &Obj<'_>) -> String {
    for (_, facet) in run_facets {
        let facet = obj(Some(facet));
        if let Some(J::Str(trace)) = get(facet, "traceId") {
            if trace.is_ascii() {
                let lowered = trace.to_ascii_lowercase();
                let b = body(&lowered);
                if b.len() == 32 && hex(b) {
                    return lowered;
                }
            }
        }
        if let Some(J::Str(parent)) = get(facet, "traceparent") {
            if parent.is_ascii() {
                let lowered = parent.to_ascii_lowercase();
                let b = body(&lowered);
                if b.len() == 55
                    && [2, 35, 52].iter().all(|&i| b[i] == b'-')
                    && hex(&b[..2])
                    && hex(&b[3..35])
                    && hex(&b[36..52])
                    && hex(&b[53..])
                {
                    return lowered[3..35].to_string();
                }
            }
        }
    }
    String::new()
}

/// `decode._dataset`: a dataset object's namespace and name as text.
type Dataset<'a> = (&'a Obj<'a>, Text<'a>, Text<'a>);

fn dataset<'a>(entry: &'a J<'a>) -> Result<Dataset<'a>, Decline> {
    let J::Obj(entry) = entry else {
        return Err(Decline);
    };
    let namespace = scalar_text(get(entry, "namespace"))?.ok_or(Decline)?;
    let name = scalar_text(get(entry, "name"))?.ok_or(Decline)?;
    Ok((entry, namespace, name))
}

/// `decode._datasets`: the datasets under `key` (none for a missing or null one).
fn datasets<'a>(event: &'a Obj<'a>, key: &str) -> Result<Vec<Dataset<'a>>, Decline> {
    match get(event, key) {
        None | Some(J::Null) => Ok(Vec::new()),
        Some(J::Arr(items)) => items.iter().map(dataset).collect(),
        Some(_) => Err(Decline),
    }
}

fn io_and_links<'a>(
    event: &'a Obj<'a>,
    kind: &'static str,
    job: &'a str,
    arena: &'a Bump,
) -> Result<(Vec<IoCells<'a>>, Vec<Link<'a>>), Decline> {
    let mut io = Vec::new();
    let mut links = Vec::new();
    if kind == "dataset" {
        let (ds, ns, name) = dataset(get(event, "dataset").ok_or(Decline)?)?;
        column_links(ds, &ns, &name, &mut links, arena)?;
        io.push(io_cells(ds, ns, name, "declared", arena)?);
        return Ok((io, links));
    }
    let edge_kind = if kind == "run" { "io" } else { "static" };
    for (ds, ns, name) in datasets(event, "inputs")? {
        if !job.is_empty() {
            links.push((
                join(arena, &["dataset:", &ns, ":", &name]),
                job,
                edge_kind,
                "",
                "",
                "",
                0,
            ));
        }
        io.push(io_cells(ds, ns, name, "input", arena)?);
    }
    for (ds, ns, name) in datasets(event, "outputs")? {
        if !job.is_empty() {
            links.push((
                job,
                join(arena, &["dataset:", &ns, ":", &name]),
                edge_kind,
                "",
                "",
                "",
                0,
            ));
        }
        column_links(ds, &ns, &name, &mut links, arena)?;
        io.push(io_cells(ds, ns, name, "output", arena)?);
    }
    Ok((io, links))
}

fn io_cells<'a>(
    ds: &'a Obj<'a>,
    namespace: Text<'a>,
    name: Text<'a>,
    direction: &'static str,
    arena: &'a Bump,
) -> Result<IoCells<'a>, Decline> {
    let (field_names, field_types) = fields(get(obj(get(ds, "facets")), "schema"), arena);
    let schema_hash = if field_names.is_empty() {
        String::new()
    } else {
        let mut pairs = Vec::with_capacity(64 * field_names.len());
        pairs.push(b'[');
        for (i, (n, t)) in field_names.iter().zip(&field_types).enumerate() {
            if i > 0 {
                pairs.push(b',');
            }
            pairs.push(b'[');
            write_str(&mut pairs, n);
            pairs.push(b',');
            write_str(&mut pairs, t);
            pairs.push(b']');
        }
        pairs.push(b']');
        digest(&pairs)
    };
    let (rows, bytes, files) = statistics(ds)?;
    Ok(IoCells {
        direction,
        namespace,
        name,
        schema_hash,
        field_names,
        field_types,
        rows,
        bytes,
        files,
    })
}

/// `decode._fields`: a schema facet's field names (nested ones dotted, each field
/// before its children) and types.
fn fields<'a>(schema: Option<&'a J<'a>>, arena: &'a Bump) -> (Vec<&'a str>, Vec<&'a str>) {
    let Some(J::Arr(top)) = get(obj(schema), "fields") else {
        return (Vec::new(), Vec::new());
    };
    // Room for the top level's fields (nested ones, rarer, grow it).
    let mut names = Vec::with_capacity(top.len());
    let mut types = Vec::with_capacity(top.len());
    let mut todo: Vec<(&'a str, std::slice::Iter<'a, J<'a>>)> = vec![("", top.iter())];
    while let Some((prefix, items)) = todo.last_mut() {
        let Some(field) = items.next() else {
            todo.pop();
            continue;
        };
        let J::Obj(field) = field else { continue };
        let Some(J::Str(name)) = get(field, "name") else {
            continue;
        };
        let full = if prefix.is_empty() {
            name.text
        } else {
            join(arena, &[prefix, name])
        };
        types.push(match get(field, "type") {
            Some(J::Str(t)) => t.text,
            _ => "",
        });
        if let Some(J::Arr(children)) = get(field, "fields") {
            todo.push((join(arena, &[full, "."]), children.iter()));
        }
        names.push(full);
    }
    (names, types)
}

/// `decode._count`: an int or a float as an i64 (truncated), None past its range.
fn count(value: Option<&J<'_>>) -> Result<Option<i64>, Decline> {
    let Some(J::Num(n)) = value else {
        return Ok(None);
    };
    Ok(match number(n)? {
        Num::Int(i) => i64::try_from(i).ok(),
        Num::Float(x) => {
            let t = x.trunc();
            // -2**63 <= t < 2**63, both exact as f64.
            if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&t) {
                Some(t as i64)
            } else {
                None
            }
        }
    })
}

/// `decode._statistics`: rows, bytes and files from the statistics facets.
/// Rows, bytes and files.
type Statistics = (Option<i64>, Option<i64>, Option<i64>);

fn statistics(ds: &Obj<'_>) -> Result<Statistics, Decline> {
    let facets = [
        obj(get(ds, "outputFacets")),
        obj(get(ds, "inputFacets")),
        obj(get(ds, "facets")),
    ];
    let (mut rows, mut size, mut files) = (None, None, None);
    for name in ["outputStatistics", "inputStatistics", "dataQualityMetrics"] {
        let Some(J::Obj(stats)) = facets.iter().find_map(|f| get(f, name)) else {
            continue;
        };
        if rows.is_none() {
            rows = count(get(stats, "rowCount"))?;
        }
        if size.is_none() {
            size = count(get(stats, "size").or_else(|| get(stats, "bytes")))?;
        }
        if files.is_none() {
            files = count(get(stats, "fileCount"))?;
        }
    }
    Ok((rows, size, files))
}

/// `decode._column_links`: field -> field edges of a column lineage facet, indirect
/// ones field -> dataset.
fn column_links<'a>(
    ds: &'a Obj<'a>,
    ns: &str,
    name: &str,
    links: &mut Vec<Link<'a>>,
    arena: &'a Bump,
) -> Result<(), Decline> {
    let Some(J::Obj(facet)) = get(obj(get(ds, "facets")), "columnLineage") else {
        return Ok(());
    };
    let mut targets: Vec<(&'a str, &'a [J<'a>], &'a Obj<'a>)> = Vec::new();
    for (out_field, spec) in obj(get(facet, "fields")) {
        let spec = obj(Some(spec));
        if let Some(J::Arr(inputs)) = get(spec, "inputFields") {
            targets.push((
                join(arena, &["datasetField:", ns, ":", name, ":", out_field]),
                inputs,
                spec,
            ));
        }
    }
    if let Some(J::Arr(indirect)) = get(facet, "dataset") {
        targets.push((join(arena, &["dataset:", ns, ":", name]), indirect, &[]));
    }
    for (dst, inputs, spec) in targets {
        let mut deprecated: Option<(&str, &str)> = None;
        for item in inputs {
            let J::Obj(item) = item else { continue };
            let part = |key: &str| match get(item, key) {
                Some(J::Str(s)) if !s.is_empty() => Some(s.text),
                _ => None,
            };
            let (Some(src_ns), Some(src_name), Some(src_field)) =
                (part("namespace"), part("name"), part("field"))
            else {
                continue;
            };
            let src = join(
                arena,
                &["datasetField:", src_ns, ":", src_name, ":", src_field],
            );
            let before = links.len();
            if let Some(J::Arr(given)) = get(item, "transformations") {
                for t in given.iter() {
                    let J::Obj(t) = t else { continue };
                    let masking = u8::from(matches!(get(t, "masking"), Some(J::Bool(true))));
                    links.push((
                        src,
                        dst,
                        "column",
                        clip_cell(get(t, "type"), 64)?,
                        clip_cell(get(t, "subtype"), 64)?,
                        clip_cell(get(t, "description"), 2000)?,
                        masking,
                    ));
                }
            }
            if links.len() == before {
                let (ty, desc) = match deprecated {
                    Some(cells) => cells,
                    None => {
                        let cells = (
                            clip_cell(get(spec, "transformationType"), 64)?,
                            clip_cell(get(spec, "transformationDescription"), 2000)?,
                        );
                        deprecated = Some(cells);
                        cells
                    }
                };
                links.push((src, dst, "column", ty, "", desc, 0));
            }
        }
    }
    Ok(())
}
