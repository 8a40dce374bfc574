//! Nothing panics on input: every bundled manifest, cut short at many places
//! and with bytes flipped, goes through parsing, the model and translation for
//! every listener mode. Whatever is invalid must come back as problems.

use std::panic;

use shmesh_api::parse::{parse_text, Outcome};
use shmesh_model::{analyze, Change, Model};
use shmesh_translate::{build, ListenerMode, ProxyView};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn run_all(text: &str) {
    let mut model = Model::new();
    let changes: Vec<Change> = parse_text("fuzz.yaml", text)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Object(p) => Some(Change::Upsert(p.key, p.object, p.origin)),
            Outcome::Rejected { problems, .. } => {
                assert!(!problems.is_empty(), "a rejection must say why");
                assert!(problems.iter().all(|p| !p.reason.is_empty()));
                None
            }
            Outcome::Skipped { .. } => None,
        })
        .collect();
    model.apply(changes);
    let _ = analyze::analyze(&model);
    for mode in [
        ListenerMode::Capture,
        ListenerMode::Explicit("127.0.0.1:15080".parse().expect("addr")),
        ListenerMode::Proxyless,
    ] {
        let snap = build(
            &model,
            &ProxyView {
                namespace: "default".into(),
                mode,
                vhds: false,
                labels: Default::default(),
                certificates: Default::default(),
            },
        );
        shmesh::jsonpb::config_dump(&snap).expect("every snapshot prints as JSON");
    }
}

#[test]
fn mutated_manifests_never_panic() {
    let mut corpus = String::new();
    let mut entries: Vec<_> = std::fs::read_dir("examples/bookinfo")
        .expect("examples")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        corpus.push_str(&std::fs::read_to_string(e.path()).expect("read example"));
        corpus.push_str("\n---\n");
    }
    let bytes = corpus.as_bytes();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let replacements: &[&[u8]] = &[
        b"-1",
        b"\"x\"",
        b"[",
        b"{}",
        b"null",
        b"99999999999",
        b"*",
        b":",
        b"\n  ",
        b"\t",
    ];
    let mut cases = 0;
    for _ in 0..400 {
        let mut text = bytes.to_vec();
        // Cut short somewhere.
        let cut = (rng.next() as usize) % text.len();
        if rng.next().is_multiple_of(3) {
            text.truncate(cut);
        }
        // And splice in a few hostile tokens.
        for _ in 0..(rng.next() % 4) {
            if text.is_empty() {
                break;
            }
            let at = (rng.next() as usize) % text.len();
            let token = replacements[(rng.next() as usize) % replacements.len()];
            let end = (at + (rng.next() as usize % 6)).min(text.len());
            text.splice(at..end, token.iter().copied());
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let result = panic::catch_unwind(|| run_all(&text));
        assert!(result.is_ok(), "panicked on input:\n{text}");
        cases += 1;
    }
    assert_eq!(cases, 400);
}
