//! `pinfuzz fuzz --shard I/N` splits a campaign's seed space: the shards of
//! one seed run disjoint program indices, together exactly the unsharded
//! campaign's, each index the same program as unsharded; and the shards'
//! corpora merge (`corpus::merge`, what `pinfuzz corpus merge` runs) into
//! the unsharded campaign's corpus.

use std::collections::BTreeSet;
use std::path::PathBuf;

use harness::campaign::{campaign_program, shard_index};
use harness::corpus::merge::merge;
use harness::corpus::store::TextCorpus;
use harness::program::Limits;

const SEED: u64 = 7;
/// Programs per shard.
const PER_SHARD: u64 = 60;

fn limits() -> Limits {
    Limits {
        max_steps: 32,
        ..Limits::FULL
    }
}

#[test]
fn shards_are_disjoint_and_cover_the_unsharded_campaign() {
    for count in [2u64, 3, 5] {
        let mut seen = BTreeSet::new();
        for i in 0..count {
            for n in 0..PER_SHARD {
                let index = shard_index(n, (i, count));
                assert_eq!(index % count, i, "shard {i}/{count} runs only its indices");
                assert!(
                    seen.insert(index),
                    "index {index} run by two shards of {count}"
                );
            }
        }
        let unsharded: BTreeSet<u64> = (0..PER_SHARD * count)
            .map(|n| shard_index(n, (0, 1)))
            .collect();
        assert_eq!(
            seen, unsharded,
            "{count} shards together = the unsharded campaign"
        );
    }
    // A sharded index is the same program as unsharded.
    for n in 0..20 {
        let index = shard_index(n, (1, 3));
        assert_eq!(
            campaign_program(SEED, index, &limits()),
            campaign_program(SEED, shard_index(index, (0, 1)), &limits())
        );
    }
}

#[test]
fn shard_corpora_merge_into_the_unsharded_corpus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let count = 2u64;
    let mut shard_dirs: Vec<PathBuf> = Vec::new();
    for i in 0..count {
        let dir = tmp.path().join(format!("shard-{i}"));
        let mut corpus = TextCorpus::open(&dir).expect("open shard corpus");
        for n in 0..PER_SHARD {
            let index = shard_index(n, (i, count));
            corpus
                .add(&campaign_program(SEED, index, &limits()), None)
                .expect("add");
        }
        shard_dirs.push(dir);
    }
    let whole_dir = tmp.path().join("unsharded");
    let mut whole = TextCorpus::open(&whole_dir).expect("open");
    for n in 0..PER_SHARD * count {
        whole
            .add(&campaign_program(SEED, n, &limits()), None)
            .expect("add");
    }
    let merged_dir = tmp.path().join("merged");
    let mut merged = TextCorpus::open(&merged_dir).expect("open");
    let stats = merge(&mut merged, &shard_dirs, &mut |_, _, warnings| {
        assert!(
            warnings.is_empty(),
            "canonical shard files need no repair: {warnings:?}"
        );
    })
    .expect("merge");
    assert_eq!(
        stats.read as u64,
        stats.new as u64 + stats.duplicates as u64
    );
    let texts = |dir: &PathBuf| -> BTreeSet<String> {
        harness::corpus::store::ops_files(dir)
            .expect("list")
            .into_iter()
            .map(|p| std::fs::read_to_string(p).expect("read"))
            .collect()
    };
    assert_eq!(merged.len(), whole.len());
    assert_eq!(texts(&merged_dir), texts(&whole_dir));
    // Merging a shard again adds nothing.
    let again = merge(&mut merged, &shard_dirs[..1], &mut |_, _, _| {}).expect("merge");
    assert_eq!(again.new, 0);
}
