//! Corpora: directories of canonical text programs, and the raw inputs
//! fuzzers keep.
//!
//! The corpus of record is text (`corpus/seeds`, `corpus/regressions`, any
//! directory of `.ops` files): readable, diffable, canonical. Fuzzers keep
//! their own raw byte corpora (libFuzzer directories, AFL++ queues, crash
//! artifacts); [`import`] turns those into canonical text, [`merge`] unions
//! text corpora without duplicates, and [`minimize`] drops programs that add
//! no model coverage, where coverage is the signature of model states of
//! [`coverage`]. [`store`] is the text corpus directory they all write
//! through (canonical text, atomic writes, content-hash names).
//! `pinfuzz corpus import|merge|minimize` (`cli/corpus.rs`) runs them.

pub mod coverage;
pub mod import;
pub mod merge;
pub mod minimize;
pub mod store;
