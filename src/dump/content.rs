//! A file's contents as a stream of plaintext, fetched a few chunks ahead in parallel, and the
//! chunks that are holes (all zeros), found from their ids without reading them.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};

use rayon::prelude::*;

use crate::crypto::ObjType;
use crate::error::Error;
use crate::format::tree::Node;
use crate::id::Id;
use crate::index::{BlobLoc, IndexReader};
use crate::reader::FileMap;
use crate::repo::Repository;

/// Plaintext fetched at once: enough to keep both cores decrypting, little enough to stay small.
const AHEAD_BYTES: u64 = 32 << 20;
const AHEAD_CHUNKS: usize = 16;

/// Reads chunks in order, a batch at a time decrypted and decompressed in parallel.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    chunks: Vec<(Id, BlobLoc)>,
    next: usize,
    ready: VecDeque<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a Repository, chunks: Vec<(Id, BlobLoc)>) -> ContentReader<'a> {
        ContentReader { repo, chunks, next: 0, ready: VecDeque::new(), cur: Vec::new(), pos: 0 }
    }

    fn fetch(&mut self) -> io::Result<()> {
        let mut end = self.next;
        let mut bytes = 0u64;
        while end < self.chunks.len() && end - self.next < AHEAD_CHUNKS && bytes < AHEAD_BYTES {
            bytes += u64::from(self.chunks[end].1.raw_len);
            end += 1;
        }
        let batch = &self.chunks[self.next..end];
        let loaded: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|(id, loc)| read_chunk(self.repo, id, loc))
            .collect::<Result<_, Error>>()
            // The archive's writer reports it with the entry's path.
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.ready.extend(loaded);
        self.next = end;
        Ok(())
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.ready.is_empty() {
                if self.next == self.chunks.len() {
                    return Ok(0);
                }
                self.fetch()?;
            }
            self.cur = self.ready.pop_front().unwrap_or_default();
            self.pos = 0;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(super) fn read_chunk(repo: &Repository, id: &Id, loc: &BlobLoc) -> Result<Vec<u8>, Error> {
    let wrap = |e: Error| Error::Blob { kind: "data blob", blob: id.hex(), pack: loc.pack.hex(), cause: Box::new(e) };
    if loc.ty != ObjType::Data {
        return Err(wrap(Error::corrupt("index entry", format!("is a {}", loc.ty.name()))));
    }
    let data = repo.read_blob_at(id, loc).map_err(wrap)?;
    if data.len() != loc.raw_len as usize {
        return Err(wrap(Error::corrupt("blob", "length differs from the index")));
    }
    Ok(data)
}

/// The file's chunks, located, with their sizes checked against the node's.
pub fn file_map(index: &IndexReader, n: &Node) -> io::Result<FileMap> {
    FileMap::new(index, &n.content, n.size).map_err(|e| io::Error::other(e.to_string()))
}

/// Writes a regular file's contents; returns the bytes written.
pub fn copy_file(repo: &Repository, index: &IndexReader, n: &Node, out: &mut dyn Write) -> io::Result<u64> {
    let map = file_map(index, n)?;
    let chunks = map.chunks().map(|(_, id, loc)| (*id, *loc)).collect();
    io::copy(&mut ContentReader::new(repo, chunks), out)
}

/// Tells the chunks that hold only zeros by their ids. Chunks cut inside a run of zeros all
/// have the chunker's [`zero_run_len`](crate::chunker::Chunker::zero_run_len); only a file's
/// last chunk can be a shorter run of zeros, so at most one id per length is ever computed.
pub struct Zeros<'a> {
    repo: &'a Repository,
    run_len: u32,
    ids: HashMap<u32, Id>,
}

impl<'a> Zeros<'a> {
    pub fn new(repo: &'a Repository) -> Zeros<'a> {
        Zeros { repo, run_len: repo.chunker().zero_run_len() as u32, ids: HashMap::new() }
    }

    pub fn is_zero(&mut self, id: &Id, len: u32, last: bool) -> bool {
        if len != self.run_len && !last {
            return false;
        }
        let repo = self.repo;
        let zero = self.ids.entry(len).or_insert_with(|| repo.keys().id(ObjType::Data, &vec![0u8; len as usize]));
        zero == id
    }
}
