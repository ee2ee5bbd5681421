//! Micro-benchmarks of each ingest stage on the same 32 MiB of data, so the end-to-end numbers
//! in `cargo xtask bench` can be read against the limits of their parts. Throughput is in bytes
//! of plaintext; "x2" variants run the stage on both cores through rayon.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

use snapfs::Id;
use snapfs::backend::{Backend, LocalBackend};
use snapfs::chunker::Chunker;
use snapfs::crypto::keyfile::KdfParams;
use snapfs::crypto::{EpochKey, Keys, ObjType};
use snapfs::format::config::Params;
use snapfs::repo::packer;
use snapfs::repo::{Cache, Repository};
use std::sync::Arc;

const LEN: usize = 32 << 20;

/// Half random, half repetitive text: compresses about 2x, like a mix of binaries and sources.
fn data() -> Vec<u8> {
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut out = Vec::with_capacity(LEN);
    let text = b"fn main() { println!(\"hello, world\"); } // a line of source code\n";
    while out.len() < LEN {
        for _ in 0..512 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            out.extend_from_slice(&s.to_le_bytes());
        }
        for _ in 0..64 {
            out.extend_from_slice(text);
        }
    }
    out.truncate(LEN);
    out
}

fn stages(c: &mut Criterion) {
    let buf = data();
    let keys = Keys::from_master([7; 32]);
    keys.add_epoch(0, EpochKey([9; 32]));
    let chunker = Chunker::new(keys.chunker_key(), &Params::DEFAULT);
    let cuts = chunker.split(&buf);
    let chunks: Vec<&[u8]> = {
        let mut off = 0;
        cuts.iter()
            .map(|&n| {
                off += n;
                &buf[off - n..off]
            })
            .collect()
    };
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(LEN as u64)).sample_size(10);
    g.bench_function("chunker (FastCDC, secret gear)", |b| b.iter(|| chunker.split(&buf).len()));
    g.bench_function("keyed blake3 x1", |b| {
        b.iter(|| chunks.iter().map(|c| keys.id(ObjType::Data, c).0[0]).sum::<u8>())
    });
    g.bench_function("keyed blake3 x2", |b| {
        b.iter(|| chunks.par_iter().map(|c| keys.id(ObjType::Data, c).0[0] as u32).sum::<u32>())
    });
    for level in [1, 3] {
        g.bench_with_input(BenchmarkId::new("zstd x1", level), &level, |b, &l| {
            b.iter(|| chunks.iter().map(|c| zstd::bulk::compress(c, l).unwrap().len()).sum::<usize>())
        });
        g.bench_with_input(BenchmarkId::new("zstd x2", level), &level, |b, &l| {
            b.iter(|| chunks.par_iter().map(|c| zstd::bulk::compress(c, l).unwrap().len()).sum::<usize>())
        });
    }
    g.bench_function("seal (zstd 3 + XChaCha20-Poly1305) x2", |b| {
        b.iter(|| {
            chunks.par_iter().map(|c| keys.seal(ObjType::Data, &Id::ZERO, c, 3, &[]).unwrap().len()).sum::<usize>()
        })
    });
    let sealed: Vec<(Id, Vec<u8>)> = chunks
        .iter()
        .map(|c| {
            let id = keys.id(ObjType::Data, c);
            (id, keys.seal(ObjType::Data, &id, c, 3, &[]).unwrap())
        })
        .collect();
    g.bench_function("open + verify x2", |b| {
        b.iter(|| {
            sealed
                .par_iter()
                .map(|(id, s)| keys.open_verified(ObjType::Data, id, s, 16 << 20).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

/// The whole store path through a real repository on disk: dedup lookup, seal, pack, fsync, index.
fn pack_write(c: &mut Criterion) {
    let buf = data();
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir.path().join("repo")));
    let repo = Repository::init(backend, b"bench", KdfParams::DEFAULT).unwrap();
    let (repo, _) = repo.load_index(&Cache::memory()).unwrap();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(LEN as u64)).sample_size(10);
    let mut round = 0u64;
    g.bench_function("packer: new data x2", |b| {
        b.iter(|| {
            round += 1;
            packer::with_packer(&repo, false, |p| {
                // A distinct prefix per round so every blob is new.
                buf.par_chunks(1 << 20).try_for_each(|c| {
                    let mut v = round.to_le_bytes().to_vec();
                    v.extend_from_slice(c);
                    p.add(ObjType::Data, &v).map(|_| ())
                })
            })
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("index");
    let reader = repo.index().reader().unwrap();
    let ids: Vec<Id> = (0..1000u32).map(|i| Keys::from_master([1; 32]).id(ObjType::Data, &i.to_le_bytes())).collect();
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("lookup (misses)", |b| {
        b.iter(|| ids.iter().filter(|id| reader.get(id).unwrap().is_some()).count())
    });
    g.finish();
}

criterion_group!(benches, stages, pack_write);
criterion_main!(benches);
