//! Issue 3, "never a panic on bad bytes", on stable: every file of `fuzz/corpus/<target>/`, and
//! seeded pseudo-random inputs, truncations and bit flips of them, go through the fuzz targets'
//! own harnesses (`fuzz/src/lib.rs`, included below), so CI keeps the guarantee without nightly
//! or libFuzzer. A crash the fuzzer finds is fixed and then committed to the corpus, where this
//! test replays it for good.
//!
//! Seed files named `ok-*` must be accepted by their target (so the seeds keep reaching the
//! decoders' success paths); `write_seed_corpus` (ignored) rewrites them.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use slate::enrich::avro;
use slate::event::{ChangeEvent, ChangeType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

type Harness = fn(&[u8]) -> bool;

/// Corpus directory name → the fuzz target's harness.
const TARGETS: [(&str, Harness); 3] =
    [("decode_json", harness::decode_json), ("avro_framing", harness::avro_framing), ("cdc", harness::cdc)];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

struct CorpusFile {
    target: &'static str,
    harness: Harness,
    name: String,
    bytes: Vec<u8>,
}

/// Every corpus file, in a stable order; a directory without a harness is an error.
fn corpus() -> Vec<CorpusFile> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let dir = dir.unwrap().path();
        let dir_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let &(target, harness) =
            TARGETS.iter().find(|(t, _)| *t == dir_name).unwrap_or_else(|| panic!("no harness for fuzz/corpus/{dir_name}"));
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push(CorpusFile { target, harness, name, bytes: std::fs::read(&path).unwrap() });
        }
    }
    files.sort_by(|a, b| (a.target, &a.name).cmp(&(b.target, &b.name)));
    files
}

/// xorshift64*: deterministic, dependency-free, good enough to pick mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs `harness` on `input`, naming the input if it panics.
fn feed(target: &str, harness: Harness, input: &[u8]) -> bool {
    std::panic::catch_unwind(|| harness(input))
        .unwrap_or_else(|_| panic!("{target} panicked on {} bytes: {:?}", input.len(), String::from_utf8_lossy(input)))
}

#[test]
fn corpus_files_decode_without_panic_and_ok_seeds_are_accepted() {
    let files = corpus();
    for (target, _) in TARGETS {
        assert!(files.iter().any(|f| f.target == target && f.name.starts_with("ok-")), "fuzz/corpus/{target} has no ok-* seed");
    }
    for file in &files {
        let accepted = feed(file.target, file.harness, &file.bytes);
        assert!(accepted || !file.name.starts_with("ok-"), "fuzz/corpus/{}/{} is no longer accepted", file.target, file.name);
        // Every file through the other targets too: cheap, and a JSON seed is garbage to Avro.
        for (target, harness) in TARGETS.iter().filter(|(t, _)| *t != file.target) {
            feed(target, *harness, &file.bytes);
        }
    }
}

#[test]
fn truncated_and_bit_flipped_corpus_files_never_panic() {
    let files = corpus();
    let mut rng = XorShift(0x5EED_0003);
    let mut runs = 0;
    for file in &files {
        let seed = &file.bytes;
        let mut run = |input: &[u8]| {
            feed(file.target, file.harness, input);
            runs += 1;
        };
        // Truncations: every prefix of a short file, 64 spread cut points of a long one.
        let cuts: Vec<usize> = if seed.len() <= 128 { (0..seed.len()).collect() } else { (0..64).map(|i| i * seed.len() / 64).collect() };
        for cut in cuts {
            run(&seed[..cut]);
        }
        if seed.is_empty() {
            continue;
        }
        for round in 0..96 {
            let mut m = seed.clone();
            match round % 4 {
                // One bit.
                0 => m[rng.below(seed.len())] ^= 1 << rng.below(8),
                // A few bits.
                1 => {
                    for _ in 0..1 + rng.below(4) {
                        m[rng.below(seed.len())] ^= 1 << rng.below(8);
                    }
                }
                // A boundary byte: varint continuation, zigzag extremes, NUL, quote.
                2 => m[rng.below(seed.len())] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, b'"', b'\\'][rng.below(8)],
                // A bit flip, then a truncation.
                _ => {
                    m[rng.below(seed.len())] ^= 1 << rng.below(8);
                    m.truncate(rng.below(seed.len() + 1));
                }
            }
            run(&m);
        }
    }
    assert!(runs > 1_000, "only {runs} mutated inputs: is the corpus there?");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x5EED_0033);
    // Pieces that steer random input toward the decoders' interesting paths.
    let mut tokens: Vec<&[u8]> = r#"{ } [ ] : , " "op" "after" "before" "source" "table" "lsn" "ts_ms" "id" "schema" "payload" "c" "d" null true -1 1e400 18446744073709551616 "\u0000" "\ud800""#
        .split(' ')
        .map(str::as_bytes)
        .collect();
    tokens.extend([&b"\xff"[..], b"\x00"]);
    for round in 0..3_000 {
        let len = rng.below(160);
        let input = match round % 3 {
            0 => rng.bytes(len),
            // A Confluent frame: magic, schema id, random datum.
            1 => [&[0u8][..], &rng.bytes(4), &rng.bytes(len)].concat(),
            _ => (0..len / 4).flat_map(|_| tokens[rng.below(tokens.len())].iter().copied()).collect(),
        };
        for (target, harness) in TARGETS {
            feed(target, harness, &input);
        }
    }
}

/// The seeds of `fuzz/corpus/` are exactly what this generator produces, and each is accepted
/// (`ok-*`) or rejected (`bad-*`) as its name says. After changing the seeds, rewrite them with
/// `WRITE_FUZZ_SEEDS=1 cargo test --test decoder_corpus seed_corpus`.
#[test]
fn seed_corpus_is_current() {
    let event = |change_type, entity, id: &str| ChangeEvent {
        uuid: Uuid::from_u128(0x8c1f_4c7e_3d6a_4a53_9a53_2b8f_1d8b_0b11),
        change_type,
        ts: 1_700_000_000_123,
        entity,
        id: id.into(),
        source: None,
        version: None,
        trace: None,
    };
    let full = ChangeEvent {
        source: Some("studio".into()),
        version: Some(12),
        trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..event(ChangeType::Update, slate::studio::kind::CASH_FLOW, "cf-000001")
    };
    let frame = |schema_id: u32, datum: Vec<u8>| [&[0u8][..], &schema_id.to_be_bytes(), &datum].concat();
    let written = |schema_id: u32, fields: Vec<(&str, Value)>| {
        let record = Value::Record(fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        frame(schema_id, GenericDatumWriter::builder(harness::writer(schema_id)).build().unwrap().write_value_to_vec(record).unwrap())
    };
    let uuid = Uuid::from_u128(7);
    let mut extra = HashMap::new();
    extra.insert("blobs".to_string(), Value::Array(vec![Value::Bytes(vec![1, 2, 3]), Value::Bytes(vec![])]));
    let ts = 1_700_000_000_000i64.to_le_bytes();
    // flags 0x07 (Connect-wrapped, no after, before present), op d, table productions, id 9,
    // lsn 5, ts_ms, source.name "pg", key {"schema":…,"payload":{"id":12}}, hint payment
    let cdc_delete =
        [&[0x07, 3, 0, 1][..], &9i64.to_le_bytes(), &[0], &5i64.to_le_bytes(), &[0], &ts, b"\x02pg", &[3, 1], &12i64.to_le_bytes(), &[5]];
    // flags 0x10 (ts_ms in source), op u, table cash_flows, id "id-cf-01", lsn 42, ts_ms,
    // source.name "studio", raw key "cf-01", no hint (the table names the entity)
    let cdc_update = [&[0x10, 2, 4, 0][..], b"\x05cf-01", &[0], &42i64.to_le_bytes(), &[0], &ts, b"\x06studio", b"\x01\x05cf-01", &[6]];
    #[rustfmt::skip]
    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        ("decode_json", "ok-event", event(ChangeType::Create, slate::studio::kind::TALENT, "tal-000001").to_json()),
        ("decode_json", "ok-event-full", full.to_json()),
        ("decode_json", "ok-debezium-create",
            br#"{"before":null,"after":{"id":"p-7","title":"X"},"op":"c","source":{"lsn":4242,"table":"productions","name":"pg"},"ts_ms":1700000000123}"#.to_vec()),
        ("decode_json", "ok-debezium-delete-connect-keyed",
            [&br#"{"schema":{},"payload":{"before":{"id":9},"after":null,"op":"d","source":{"lsn":5},"ts_ms":1}}"#[..], b"\x00\x05", br#"{"schema":{},"payload":{"id":12}}"#].concat()),
        ("decode_json", "ok-debezium-update-raw-key",
            [&br#"{"before":{"id":1},"after":{"id":1},"op":"u","source":{"table":"cash_flows","ts_ms":1700000000123}}"#[..], b"\x00\x06", b"cf-raw"].concat()),
        ("decode_json", "bad-unknown-entity",
            br#"{"uuid":"8c1f4c7e-3d6a-4a53-9a53-2b8f1d8b0b11","type":"UPDATE","ts":1,"entity":"invoice","id":"1"}"#.to_vec()),
        ("decode_json", "bad-unsupported-op", br#"{"op":"t","before":null,"after":null,"ts_ms":1}"#.to_vec()),
        ("avro_framing", "ok-writer0-create", frame(0, avro::change_event_datum(&event(ChangeType::Create, slate::studio::kind::PRODUCTION, "prod-000001")).unwrap())),
        ("avro_framing", "ok-writer0-full", frame(4, avro::change_event_datum(&full).unwrap())),
        ("avro_framing", "ok-writer1-old", written(1, vec![
            ("uuid", Value::Uuid(uuid)), ("type", Value::Enum(2, "DELETE".into())), ("ts", Value::TimestampMillis(5)),
            ("entity", Value::String("cash_flows".into())), ("id", Value::String("cf-1".into())),
        ])),
        ("avro_framing", "ok-writer2-promoted", written(2, vec![
            ("id", Value::Bytes(b"bud-1".to_vec())), ("entity", Value::String("Budget".into())), ("uuid", Value::String(uuid.to_string())),
            ("type", Value::Enum(1, "UPDATE".into())), ("ts", Value::TimestampMillis(6)),
            ("version", Value::Union(1, Box::new(Value::Int(3)))), ("tenant", Value::String("north".into())),
        ])),
        ("avro_framing", "ok-writer3-widened", written(3, vec![
            ("uuid", Value::Uuid(uuid)), ("type", Value::Enum(0, "CREATE".into())), ("ts", Value::TimestampMillis(7)),
            ("entity", Value::String("payment".into())), ("id", Value::String("pay-1".into())),
            ("version", Value::Union(0, Box::new(Value::Null))), ("source", Value::Union(1, Box::new(Value::String("studio".into())))),
            ("trace", Value::String("t".into())), ("extra", Value::Map(extra)),
        ])),
        ("avro_framing", "bad-writer3-merge", written(3, vec![
            ("uuid", Value::Uuid(uuid)), ("type", Value::Enum(3, "MERGE".into())), ("ts", Value::TimestampMillis(7)),
            ("entity", Value::String("payment".into())), ("id", Value::String("pay-1".into())),
            ("version", Value::Union(0, Box::new(Value::Null))), ("source", Value::Union(2, Box::new(Value::Long(1)))),
            ("trace", Value::String("t".into())), ("extra", Value::Map(HashMap::new())),
        ])),
        ("cdc", "ok-create-all-zero", vec![0; 48]),
        ("cdc", "ok-delete-connect-keyed", cdc_delete.concat()),
        ("cdc", "ok-update-table-from-source", cdc_update.concat()),
        ("cdc", "bad-unsupported-op", [&[0u8, 4][..], &[0; 46]].concat()),
    ];
    for (target, name, bytes) in seeds {
        let harness = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        assert_eq!(harness(&bytes), name.starts_with("ok-"), "{target}/{name} {:?}", String::from_utf8_lossy(&bytes));
        let dir = corpus_root().join(target);
        if std::env::var_os("WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        } else {
            let on_disk =
                std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{target}/{name}: {e}; regenerate with WRITE_FUZZ_SEEDS=1"));
            assert_eq!(on_disk, bytes, "{target}/{name} is stale; regenerate with WRITE_FUZZ_SEEDS=1");
        }
    }
}
