//! pinfuzz: differential testing of Linux page pinning.
//!
//! Programs ([`op::Program`]) of mmap / touch / GUP / pin / unpin / fork /
//! THP-split operations run on two backends side by side: the pure model in
//! the `reference` crate and the real kernel (through the helper module in
//! `kmod/`, usually inside a QEMU guest). After every step both report an
//! [`obs::StepObs`]; the oracle compares them.
#![deny(missing_docs)]

pub mod agent;
pub mod backend;
pub mod bench;
pub mod campaign;
pub mod channel;
pub mod cli;
pub mod corpus;
pub mod creproducer;
pub mod diff;
pub mod exec;
pub mod finding;
pub mod fuzzfront;
pub mod fuzzing;
pub mod kernel;
pub mod minimize;
pub mod nightly;
pub mod obs;
pub mod op;
pub mod oracle;
pub mod program;
pub mod report;
pub mod selftests;
pub mod trace;
pub mod uapi;
pub mod vm;
