//! The test vectors in `format-spec/vectors/` against the code, so spec and code cannot drift.
//! Deterministic encodings (trees, snapshots, pack headers, ids, chunk cuts) must match byte for
//! byte; randomized objects (envelopes, key slots, config) must open to the recorded contents.
//! `SNAPFS_WRITE_VECTORS=1 cargo test --test format_vectors` rewrites those two after a format
//! change (which also bumps the format version; see format-spec §13). `independent.txt` is
//! written by `format-spec/vectors/independent.py`, an implementation of the spec that shares no
//! code with this crate: the code must open and reproduce what it wrote.

use std::collections::BTreeMap;
use std::path::PathBuf;

use snapfs::Id;
use snapfs::chunker::Chunker;
use snapfs::crypto::keyfile::{self, KdfParams, KeySlot};
use snapfs::crypto::{self, EpochKey, Keys, ObjType};
use snapfs::format::config::{self, Params};
use snapfs::format::pack::{self, PackEntry};
use snapfs::format::snapshot::{self, Snapshot, Summary};
use snapfs::format::tree::{self, Kind, Node, Time};

const MASTER: [u8; 32] = *b"snapfs test vector master key 01";
const PASSWORD: &[u8] = b"correct horse battery staple";

/// The test master key with epoch 0's data key (32 bytes 0x11, as in `independent.txt`).
fn test_keys() -> Keys {
    let k = Keys::from_master(MASTER);
    k.add_epoch(0, EpochKey([0x11; 32]));
    k
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// A deterministic byte stream (splitmix64) so chunk-cut vectors need no stored input.
fn stream(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sample_nodes() -> Vec<Node> {
    let base = Node {
        name: b"a file".to_vec(),
        kind: Kind::File,
        mode: 0o644,
        uid: 1000,
        gid: 100,
        user: "alice".into(),
        group: "users".into(),
        mtime: Time { sec: 1_795_442_709, nsec: 123_456_789 },
        ctime: Time { sec: 1_795_442_710, nsec: 1 },
        atime: None,
        dev: 0x803,
        ino: 4242,
        nlink: 1,
        size: 5,
        rdev: 0,
        link_target: vec![],
        xattrs: vec![(b"user.note".to_vec(), b"hi".to_vec())],
        content: vec![Id([0x11; 32])],
    };
    vec![
        base.clone(),
        Node {
            name: b"dir".to_vec(),
            kind: Kind::Dir,
            mode: 0o1777,
            atime: Some(Time { sec: -1_000_000, nsec: 5 }),
            size: 0,
            xattrs: vec![],
            content: vec![Id([0x22; 32])],
            ..base.clone()
        },
        Node {
            name: b"link\xff".to_vec(),
            kind: Kind::Symlink,
            mode: 0o777,
            size: 6,
            link_target: b"a file".to_vec(),
            xattrs: vec![],
            content: vec![],
            ..base.clone()
        },
        Node {
            name: b"null".to_vec(),
            kind: Kind::CharDev,
            rdev: 0x103,
            size: 0,
            xattrs: vec![],
            content: vec![],
            ..base
        },
    ]
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        time_ns: 1_795_442_709_000_000_001,
        tree: Id([0x33; 32]),
        parent: Some(Id([0x44; 32])),
        hostname: "host".into(),
        username: "alice".into(),
        uid: 1000,
        gid: 100,
        paths: vec!["/home/alice".into()],
        tags: vec!["daily".into(), "laptop".into()],
        description: "vector".into(),
        program_version: "snapfs 0.1.0".into(),
        summary: Summary {
            files_new: 1,
            bytes_read: 5,
            total_files: 1,
            total_bytes: 5,
            duration_ns: 7,
            ..Summary::default()
        },
        original: Some(Id([0x77; 32])),
    }
}

/// Everything deterministic, computed by the code now.
fn deterministic() -> BTreeMap<String, String> {
    let keys = test_keys();
    let mut v = BTreeMap::new();
    v.insert("master".into(), hex(&MASTER));
    v.insert("data_id(\"hello\")".into(), keys.id(ObjType::Data, b"hello").hex());
    v.insert("tree_id(\"hello\")".into(), keys.id(ObjType::Tree, b"hello").hex());
    v.insert("snapshot_id(\"hello\")".into(), keys.id(ObjType::Snapshot, b"hello").hex());
    let chunker = Chunker::new(keys.chunker_key(), &Params::DEFAULT);
    let cuts: Vec<String> = chunker.split(&stream(24 << 20, 7)).iter().map(|n| n.to_string()).collect();
    v.insert("chunk_lengths(splitmix64 seed 7, 24 MiB)".into(), cuts.join(","));
    let nodes = sample_nodes();
    let t = tree::encode(&nodes);
    v.insert("tree".into(), hex(&t));
    v.insert("tree_id(tree)".into(), keys.id(ObjType::Tree, &t).hex());
    v.insert("snapshot".into(), hex(&snapshot::encode(&sample_snapshot())));
    let entries = [
        PackEntry { ty: ObjType::Data, id: Id([0x55; 32]), offset: 0, length: 100, raw_len: 59 },
        PackEntry { ty: ObjType::Tree, id: Id([0x66; 32]), offset: 100, length: 200, raw_len: 300 },
    ];
    v.insert("pack_header".into(), hex(&pack::encode_header(&entries)));
    v.insert("pack_trailer(245)".into(), hex(&pack::encode_trailer(245)));
    v.insert("config_params".into(), hex(&Params::DEFAULT.encode()));
    v
}

/// Objects sealed with random nonces and salts, recorded once; they must keep opening.
fn randomized() -> BTreeMap<String, String> {
    let keys = test_keys();
    let mut v = BTreeMap::new();
    let payload = b"hello";
    let id = keys.id(ObjType::Data, payload);
    v.insert("envelope_data(\"hello\")".into(), hex(&keys.seal(ObjType::Data, &id, payload, 3, &[]).unwrap()));
    let big = vec![b'z'; 4096];
    let id = keys.id(ObjType::Data, &big);
    v.insert("envelope_data_zstd(4096 x 'z')".into(), hex(&keys.seal(ObjType::Data, &id, &big, 3, &[]).unwrap()));
    let header = config::encode_header(&[0xab; 16]);
    let mut cfg = header.to_vec();
    cfg.extend(keys.seal(ObjType::Config, &Id::ZERO, &Params::DEFAULT.encode(), 0, &header).unwrap());
    v.insert("config_file".into(), hex(&cfg));
    v.insert("epoch_object".into(), hex(&keys.seal_epoch(0, &[0xab; 16], 1_795_442_709_123_456_789).unwrap()));
    let kdf = KdfParams::DEFAULT;
    v.insert(
        "key_slot".into(),
        hex(&keyfile::wrap(&keys, PASSWORD, kdf, 1_795_442_709_000_000_000, "host", "alice").unwrap()),
    );
    v
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors").join(name)
}

fn read(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("`name = value` lines");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn write(name: &str, what: &str, v: &BTreeMap<String, String>) {
    let mut s = format!(
        "# snapfs format v2 test vectors: {what}\n# Generated by tests/format_vectors.rs; see format-spec/README.md.\n"
    );
    for (k, val) in v {
        s.push_str(&format!("{k} = {val}\n"));
    }
    std::fs::write(path(name), s).unwrap();
}

#[test]
fn deterministic_encodings_match_the_vectors() {
    let now = deterministic();
    if std::env::var_os("SNAPFS_WRITE_VECTORS").is_some() {
        write("deterministic.txt", "ids, chunk cuts and canonical encodings", &now);
    }
    let stored = read("deterministic.txt");
    assert_eq!(stored.keys().collect::<Vec<_>>(), now.keys().collect::<Vec<_>>());
    for (k, v) in &stored {
        assert_eq!(v, &now[k], "vector {k} differs from the code");
    }
    // And the decoders give back what was encoded.
    assert_eq!(tree::decode(&unhex(&stored["tree"])).unwrap(), sample_nodes());
    assert_eq!(snapshot::decode(&unhex(&stored["snapshot"])).unwrap(), sample_snapshot());
    let h = pack::decode_header(&unhex(&stored["pack_header"]), 300).unwrap();
    assert_eq!((h[1].ty, h[1].offset, h[1].raw_len), (ObjType::Tree, 100, 300));
    assert!(pack::decode_header(&unhex(&stored["pack_header"]), 299).is_err(), "entry past the blob area");
}

#[test]
fn randomized_objects_still_open() {
    if std::env::var_os("SNAPFS_WRITE_VECTORS").is_some() {
        write("randomized.txt", "sealed objects (random nonces and salts) that must open", &randomized());
    }
    let v = read("randomized.txt");
    let keys = test_keys();
    let open = |name: &str, payload: &[u8]| {
        let id = keys.id(ObjType::Data, payload);
        keys.open_verified(ObjType::Data, &id, &unhex(&v[name]), 1 << 20).unwrap()
    };
    assert_eq!(open("envelope_data(\"hello\")", b"hello"), b"hello");
    let big = vec![b'z'; 4096];
    let sealed = unhex(&v["envelope_data_zstd(4096 x 'z')"]);
    assert!(sealed.len() < 200, "compressible payload stored compressed");
    assert_eq!(open("envelope_data_zstd(4096 x 'z')", &big), big);

    let cfg = unhex(&v["config_file"]);
    let (version, repo_id) = config::decode_header(&cfg).unwrap();
    assert_eq!((version, repo_id), (2, [0xab; 16]));
    let params = keys.open(ObjType::Config, &Id::ZERO, &cfg[28..], 1024, &cfg[..28]).unwrap();
    assert_eq!(Params::decode(&params).unwrap(), Params::DEFAULT);

    let slot = KeySlot::parse(&unhex(&v["key_slot"])).unwrap();
    assert_eq!((slot.kdf, slot.hostname.as_str(), slot.username.as_str()), (KdfParams::DEFAULT, "host", "alice"));
    let unwrapped = slot.unwrap(PASSWORD).unwrap().expect("the right password opens the slot");
    assert_eq!(unwrapped.master(), &MASTER);
    assert!(slot.unwrap(b"wrong").unwrap().is_none());
    let (key, created) = keys.open_epoch(0, &[0xab; 16], &unhex(&v["epoch_object"])).unwrap();
    assert_eq!((key.0, created), ([0x11; 32], 1_795_442_709_123_456_789));
}

#[test]
fn tampering_is_detected() {
    let v = read("randomized.txt");
    let keys = test_keys();
    let sealed = unhex(&v["envelope_data(\"hello\")"]);
    let id = keys.id(ObjType::Data, b"hello");
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(keys.open(ObjType::Data, &id, &bad, 1024, &[]).is_err(), "flip at byte {i} not detected");
    }
    // The same bytes under another type or id do not open: the AAD binds both.
    assert!(keys.open(ObjType::Tree, &id, &sealed, 1024, &[]).is_err());
    assert!(keys.open(ObjType::Data, &Id([0; 32]), &sealed, 1024, &[]).is_err());
    let other = Keys::from_master([1; 32]);
    other.add_epoch(0, EpochKey([0x12; 32]));
    assert!(other.open(ObjType::Data, &id, &sealed, 1024, &[]).is_err());
    // Another epoch number is another key, and is bound into the AAD too.
    let mut renumbered = sealed.clone();
    renumbered[0] = 1;
    let two = test_keys();
    two.add_epoch(1, EpochKey([0x11; 32]));
    assert!(two.open(ObjType::Data, &id, &renumbered, 1024, &[]).is_err());
    // A config header that was changed no longer authenticates its sealed part.
    let mut cfg = unhex(&v["config_file"]);
    cfg[12] ^= 1;
    assert!(keys.open(ObjType::Config, &Id::ZERO, &cfg[28..], 1024, &cfg[..28]).is_err());
}

#[test]
fn decoders_refuse_garbage_without_panicking() {
    let t = unhex(&read("deterministic.txt")["tree"]);
    for cut in 0..t.len() {
        assert!(tree::decode(&t[..cut]).is_err(), "truncated tree at {cut} accepted");
    }
    let s = unhex(&read("deterministic.txt")["snapshot"]);
    for cut in 0..s.len() {
        assert!(snapshot::decode(&s[..cut]).is_err(), "truncated snapshot at {cut} accepted");
    }
    // Flipped bytes may decode to another valid value, but must never panic.
    for i in 0..t.len() {
        let mut bad = t.clone();
        bad[i] ^= 0xff;
        let _ = tree::decode(&bad);
    }
    // A hostile count must not make the decoder allocate for it.
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(tree::decode(&huge).is_err());
}

/// The vectors of the independent implementation: the code opens what it sealed, decodes what
/// it encoded and, for the canonical encodings, produces the same bytes.
#[test]
fn the_independent_implementation_agrees() {
    let v: BTreeMap<String, Vec<u8>> = read("independent.txt").into_iter().map(|(k, x)| (k, unhex(&x))).collect();
    let repo_id = [0xab; 16];
    assert_eq!(v["master"], MASTER);
    let keys = Keys::from_master(MASTER);
    assert_eq!(&v["chunker_key"][..], keys.chunker_key());
    for (name, ty) in [
        ("data_id(hello)", ObjType::Data),
        ("tree_id(hello)", ObjType::Tree),
        ("snapshot_id(hello)", ObjType::Snapshot),
    ] {
        assert_eq!(v[name], keys.id(ty, b"hello").0, "{name}");
    }
    let chunker = Chunker::new(keys.chunker_key(), &Params::DEFAULT);
    let gear: Vec<u8> = chunker.gear()[..8].iter().flat_map(|g| g.to_le_bytes()).collect();
    assert_eq!(v["gear_table_first8"], gear);

    // The keyring: epoch objects and the config open under keys derived from the master alone.
    let keys = Keys::from_master(MASTER);
    let (epoch0, created) = keys.open_epoch(0, &repo_id, &v["epoch_object"]).unwrap();
    assert_eq!((&epoch0.0[..], created), (&v["epoch0_key"][..], 1_795_442_709_123_456_789));
    assert!(keys.open_epoch(1, &repo_id, &v["epoch_object"]).is_err(), "the name must match the epoch");
    assert!(keys.open_epoch(0, &[0xac; 16], &v["epoch_object"]).is_err(), "bound to the repository id");
    keys.add_epoch(0, epoch0);
    keys.add_epoch(7, EpochKey(v["epoch7_key"].clone().try_into().unwrap()));
    let cfg = &v["config_file"];
    assert_eq!(config::decode_header(cfg).unwrap(), (2, repo_id));
    let params = keys.open(ObjType::Config, &Id::ZERO, &cfg[28..], 1024, &cfg[..28]).unwrap();
    assert_eq!(params, v["config_params"]);
    assert_eq!(Params::decode(&params).unwrap(), Params::DEFAULT);
    assert_eq!(Params::DEFAULT.encode(), v["config_params"]);

    // A config carrying another repository's identity keys: ids come from those, not the master.
    let cfg = &v["config_file_identity"];
    let plain = keys.open(ObjType::Config, &Id::ZERO, &cfg[28..], 1024, &cfg[..28]).unwrap();
    assert_eq!(plain, v["config_params_identity"]);
    let (params, identity) = config::split(&plain).unwrap();
    assert_eq!(Params::decode(params).unwrap(), Params::DEFAULT);
    let mut related = Keys::from_master(MASTER);
    related.set_identity(&crypto::Identity::decode(identity.unwrap()).unwrap());
    assert_eq!(related.id(ObjType::Data, b"hello").0.to_vec(), v["identity_data_id_hello"]);
    assert_eq!(related.id(ObjType::Tree, b"hello").0.to_vec(), v["identity_tree_id_hello"]);
    assert_eq!(related.chunker_key(), &[0x54; 32]);
    assert!(!related.same_ids(&keys) && related.identity().chunker == [0x54; 32]);
    assert!(config::split(&plain[..100]).is_err(), "a plaintext of neither length");
    let cfg = &v["config_file"];

    // Envelopes, raw and compressed, and their associated data.
    let hello = keys.id(ObjType::Data, b"hello");
    assert_eq!(crypto::aad(ObjType::Data, 0, &hello, &[]), v["aad_data_hello"]);
    assert_eq!(crypto::aad(ObjType::Config, 0, &Id::ZERO, &cfg[..28]), v["aad_config"]);
    assert_eq!(keys.open_verified(ObjType::Data, &hello, &v["envelope_data_raw"], 1024).unwrap(), b"hello");
    let zid = Id(v["envelope_data_zstd_id"].clone().try_into().unwrap());
    assert_eq!(keys.open_verified(ObjType::Data, &zid, &v["envelope_data_zstd"], 8192).unwrap(), vec![b'z'; 4096]);

    // Trees and snapshots: same bytes both ways, same ids.
    let nodes = tree::decode(&v["tree"]).unwrap();
    assert_eq!(tree::encode(&nodes), v["tree"]);
    let tid = keys.id(ObjType::Tree, &v["tree"]);
    assert_eq!(tid.0[..], v["tree_id(tree)"][..]);
    assert_eq!(keys.open_verified(ObjType::Tree, &tid, &v["envelope_tree"], 1 << 20).unwrap(), v["tree"]);
    assert_eq!(nodes[0].content, vec![hello]);
    let snap = snapshot::decode(&v["snapshot"]).unwrap();
    assert_eq!(snapshot::encode(&snap), v["snapshot"]);
    assert_eq!(snap.tree, tid);
    assert_eq!(snap.original, Some(Id([0x99; 32])));
    // Version 1, written before `original` existed, still reads, as the same snapshot.
    let v1 = snapshot::decode(&v["snapshot_v1"]).unwrap();
    assert_eq!(v1, snapshot::Snapshot { original: None, ..snap.clone() });
    let sid = keys.id(ObjType::Snapshot, &v["snapshot"]);
    assert_eq!(sid.0[..], v["snapshot_id"][..]);
    assert_eq!(keys.open_verified(ObjType::Snapshot, &sid, &v["envelope_snapshot"], 1 << 20).unwrap(), v["snapshot"]);

    // A whole pack: trailer, header, and both blobs found and opened through the header.
    let pf = &v["pack_file"];
    assert_eq!(blake3::hash(pf).as_bytes()[..], v["pack_id"][..]);
    let (start, hlen) = pack::decode_trailer(&pf[pf.len() - 8..], pf.len() as u64).unwrap();
    assert_eq!(pf[pf.len() - 8..], v["pack_trailer"][..]);
    let env = &pf[start as usize..start as usize + hlen as usize];
    assert_eq!(env, &v["pack_header_envelope"][..]);
    let header = keys.open(ObjType::PackHeader, &Id::ZERO, env, 1 << 20, &[]).unwrap();
    assert_eq!(header, v["pack_header"]);
    let entries = pack::decode_header(&header, start).unwrap();
    assert_eq!(pack::encode_header(&entries), header);
    assert_eq!(entries.len(), 2);
    for e in &entries {
        let blob = &pf[e.offset as usize..(e.offset + e.length) as usize];
        let plain = keys.open_verified(e.ty, &e.id, blob, e.raw_len as usize).unwrap();
        assert_eq!(plain.len(), e.raw_len as usize);
    }

    // The key slot: parsed, and the password unwraps the master key.
    let slot = KeySlot::parse(&v["key_slot"]).unwrap();
    assert_eq!((slot.kdf, slot.hostname.as_str(), slot.username.as_str()), (KdfParams::DEFAULT, "host", "alice"));
    assert_eq!(slot.unwrap(PASSWORD).unwrap().expect("the password opens it").master(), &MASTER);
}

#[test]
fn weak_key_slots_are_refused_by_the_library() {
    let keys = test_keys();
    for kdf in [
        KdfParams { m_kib: 64, t: 1, p: 1 },
        KdfParams { m_kib: 65536, t: 2, p: 4 },
        KdfParams { m_kib: 32768, t: 3, p: 4 },
    ] {
        let err = keyfile::wrap(&keys, PASSWORD, kdf, 0, "h", "u").expect_err("below the floor");
        assert!(err.to_string().contains("below the floor"), "{err}");
    }
}

#[test]
fn bundle_layouts_match_the_hand_written_vectors() {
    use snapfs::format::bundle::{self, Header};
    let v = read("bundle.txt");
    let header = Header { repo_id: [0xab; 16], snapshots: vec![Id([0xcd; 32])], blobs: 3, blob_bytes: 0x1234 };
    let bytes = unhex(&v["bundle_header"]);
    assert_eq!(hex(&header.encode(b"keys", 0x65)), v["bundle_header"]);
    let (mut decoded, count) = Header::decode_fixed(&bytes[..bundle::FIXED_LEN]).unwrap();
    assert_eq!(count, 1);
    decoded.decode_ids(&bytes[bundle::FIXED_LEN..bundle::FIXED_LEN + 32], count).unwrap();
    assert_eq!(decoded, header);
    assert_eq!(bundle::decode_len(&bytes[77..81], "key slot", bundle::MAX_KEY_SLOT).unwrap(), 4);
    assert_eq!(bundle::decode_len(&bytes[85..89], "manifest", bundle::MAX_MANIFEST).unwrap(), 0x65);
    let mut other = bytes.clone();
    other[8] = 2;
    let e = Header::decode_fixed(&other[..bundle::FIXED_LEN]).unwrap_err().to_string();
    assert!(e.contains("bundle format version 2"), "{e}");
    other[8] = 1;
    other[25..29].copy_from_slice(&0u32.to_le_bytes());
    assert!(Header::decode_fixed(&other[..bundle::FIXED_LEN]).is_err(), "a bundle of no snapshots");
    assert!(bundle::decode_len(&5000u32.to_le_bytes(), "key slot", bundle::MAX_KEY_SLOT).is_err());

    let rec = unhex(&v["bundle_record_header"]);
    assert_eq!(hex(&bundle::encode_record_header(2, &Id([0xef; 32]), 16, 61)), v["bundle_record_header"]);
    assert_eq!(bundle::decode_record_header(&rec.try_into().unwrap()), (2, Id([0xef; 32]), 16, 61));

    let mut id_keys = [0x11u8; 64];
    id_keys[32..].fill(0x22);
    let snaps = vec![(Id([0xcd; 32]), b"abc".to_vec())];
    assert_eq!(hex(&bundle::encode_manifest(&id_keys, &snaps)), v["bundle_manifest"]);
    let m = bundle::decode_manifest(&unhex(&v["bundle_manifest"])).unwrap();
    assert_eq!((*m.id_keys, m.snapshots), (id_keys, snaps));
}
