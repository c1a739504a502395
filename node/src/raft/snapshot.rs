//! Snapshot files: the state machine's tables streamed to disk, never held whole in memory.
//!
//! Layout: `MAGIC`, a length-prefixed postcard `SnapshotMeta`, then records
//! `[table tag u8][key len u32][key][value len u32][value]` and a final `END` tag. The same
//! file is what a leader streams to a lagging member in bounded chunks.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::{decode, encode};
use super::SnapshotMeta;
use crate::storage::{Durability, Engine, Table, WriteBatch};

const MAGIC: &[u8; 8] = b"KEELSNP1";
const END: u8 = 0;

/// The tables a snapshot carries: everything the state machine owns, nothing of the log.
const SNAPSHOT_TABLES: [(u8, Table); 2] = [(1, Table::Kv), (2, Table::StateMeta)];

/// Records per engine batch while installing: bounds memory for any snapshot size.
const INSTALL_BATCH_RECORDS: usize = 4096;

/// Bytes per chunk when a snapshot is sent to a peer.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A snapshot on disk. Cheap to clone: it names the file, it does not hold its bytes.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

fn table_for_tag(tag: u8) -> Option<Table> {
    SNAPSHOT_TABLES.iter().find(|(t, _)| *t == tag).map(|(_, table)| *table)
}

/// The file name a snapshot of `meta` is stored under; names sort in log order.
pub fn file_name(meta: &SnapshotMeta) -> String {
    let index = meta.last_log_id.map_or(0, |id| id.index);
    format!("{index:020}.snap")
}

/// Writes the state machine's tables as they are now to `path` (through a temp file, so a crash
/// never leaves a half-written snapshot under the final name).
/// Writes the snapshot file of `engine`'s tables at `path`, as of the point in time at which
/// `fixed` is called (before anything is read): the state machine may apply more entries
/// meanwhile without them showing in the file.
pub fn write(engine: &Arc<dyn Engine>, meta: &SnapshotMeta, path: &Path, fixed: &mut dyn FnMut()) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(MAGIC)?;
    write_chunk(&mut out, &encode(meta)?)?;
    let tables: Vec<Table> = SNAPSHOT_TABLES.iter().map(|(_, table)| *table).collect();
    let mut write_err = None;
    engine
        .scan_as_of_now(&tables, fixed, &mut |table, key, value| {
            let Some((tag, _)) = SNAPSHOT_TABLES.iter().find(|(_, t)| *t == table) else { return false };
            let res = out
                .write_all(&[*tag])
                .and_then(|_| write_chunk(&mut out, key))
                .and_then(|_| write_chunk(&mut out, value));
            match res {
                Ok(()) => true,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            }
        })
        .map_err(io::Error::other)?;
    if let Some(e) = write_err {
        return Err(e);
    }
    out.write_all(&[END])?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads only the metadata of a snapshot file.
pub fn read_meta(path: &Path) -> io::Result<SnapshotMeta> {
    let mut input = BufReader::new(File::open(path)?);
    read_header(&mut input)
}

/// Replaces the state machine's tables with the snapshot's contents, in bounded batches.
/// The caller writes the applied log id afterwards: until then a crash leaves a state that
/// claims nothing newer than before, and the snapshot is installed again.
pub fn install(engine: &Arc<dyn Engine>, path: &Path) -> io::Result<SnapshotMeta> {
    let mut input = BufReader::new(File::open(path)?);
    let meta = read_header(&mut input)?;
    let mut batch = WriteBatch::new();
    for (_, table) in SNAPSHOT_TABLES {
        batch.delete_range(table, Vec::new(), vec![0xff; 64]);
    }
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let table = table_for_tag(tag[0]).ok_or_else(|| invalid("unknown table tag in snapshot"))?;
        let key = read_chunk(&mut input)?;
        let value = read_chunk(&mut input)?;
        batch.put(table, key, value);
        if batch.len() >= INSTALL_BATCH_RECORDS {
            engine.write(std::mem::take(&mut batch), Durability::Buffered).map_err(io::Error::other)?;
        }
    }
    engine.write(batch, Durability::Buffered).map_err(io::Error::other)?;
    engine.sync().map_err(io::Error::other)?;
    Ok(meta)
}

fn read_header(input: &mut impl Read) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a Keel snapshot file"));
    }
    decode(&read_chunk(input)?)
}

/// Largest key or value a snapshot record may hold: a corrupt length fails instead of
/// allocating gigabytes.
const RECORD_BYTES_MAX: usize = 64 << 20;

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("snapshot record too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(invalid("snapshot record length out of bounds"));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}
