//! Builders for the unit tests of the program modules: the few steps they
//! construct by hand, in one place.

use reference::{MapKind, Prot};

use crate::op::{MapId, Op, Proc, Step};

/// `m<map> = mmap anon-private <pages> rw` at file offset 0.
pub(crate) fn mmap(map: u8, pages: u16) -> Op {
    Op::Mmap {
        map: MapId(map),
        kind: MapKind::AnonPrivate,
        pages,
        prot: Prot::ReadWrite,
        offset: 0,
    }
}

/// `op` run by `proc`, without comments.
pub(crate) fn step(proc: Proc, op: Op) -> Step {
    Step {
        proc,
        op,
        comments: Vec::new(),
    }
}
