//! Corpus minimization: keep the smallest program for every coverage
//! element, drop the rest.
//!
//! The signature of each program ([`super::coverage::signature`]) is the
//! set of model states it visits. For every element of the union of all
//! signatures the smallest program that has it is kept (size: steps, then
//! bytes of canonical text, then file name, so the choice is the same on
//! every run); a program that is nobody's smallest adds no coverage a kept
//! program does not have, and is dropped. This is afl-cmin's rule over our
//! own signature rather than edge coverage. The kept set covers every
//! element of the corpus; it is not the smallest such set (set cover is
//! NP-hard), but it favours small programs, which replay and minimize
//! faster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use super::coverage::{Element, signature};
use super::store::{load, ops_files};

/// One program of a corpus with its signature.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its file.
    pub path: PathBuf,
    /// Steps.
    pub steps: usize,
    /// Bytes of canonical text.
    pub bytes: usize,
    /// Coverage elements.
    pub elements: usize,
}

/// The decision of [`plan`].
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Programs to keep, in path order, with the number of elements each is
    /// the smallest holder of.
    pub keep: Vec<(Entry, usize)>,
    /// Programs that add nothing, in path order.
    pub drop: Vec<Entry>,
    /// Distinct elements of the whole corpus (all covered by `keep`).
    pub elements: usize,
}

/// Read every `*.ops` file under `dir`, compute signatures and decide what
/// to keep. Nothing is changed on disk.
///
/// # Errors
///
/// A file that cannot be read.
pub fn plan(dir: &std::path::Path) -> Result<Plan> {
    let mut entries = Vec::new();
    let mut signatures = Vec::new();
    for path in ops_files(dir)? {
        let loaded = load(&path)?;
        let sig = signature(&loaded.program);
        entries.push(Entry {
            path,
            steps: loaded.program.steps.len(),
            bytes: loaded.canonical.len(),
            elements: sig.len(),
        });
        signatures.push(sig);
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&entries[a], &entries[b]);
        (x.steps, x.bytes, &x.path).cmp(&(y.steps, y.bytes, &y.path))
    });
    // The first program in size order holding an element is its smallest.
    let mut owner: BTreeMap<Element, usize> = BTreeMap::new();
    for &i in &order {
        for element in &signatures[i] {
            owner.entry(*element).or_insert(i);
        }
    }
    let mut owned = vec![0usize; entries.len()];
    for &i in owner.values() {
        owned[i] += 1;
    }
    let mut result = Plan {
        elements: owner.len(),
        ..Plan::default()
    };
    for (entry, count) in entries.into_iter().zip(owned) {
        if count > 0 {
            result.keep.push((entry, count));
        } else {
            result.drop.push(entry);
        }
    }
    Ok(result)
}

/// Delete the files [`plan`] drops.
///
/// # Errors
///
/// A file that cannot be removed, naming it.
pub fn apply(plan: &Plan) -> Result<()> {
    use anyhow::Context as _;
    for entry in &plan.drop {
        std::fs::remove_file(&entry.path)
            .with_context(|| format!("removing {}", entry.path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;

    use super::*;

    #[test]
    fn keeps_the_smallest_program_per_element_and_loses_no_coverage() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let touch = "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
                     touch(m0[0..1], write)\n";
        let pin = "pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
                   touch(m0[0..1], write)\np0 = pin_user_pages(m0[0..1], write)\nunpin(p0)\n";
        // The same states as `pin`, in a longer text: adds nothing.
        let pin_commented = "# the same pin, with a long comment that makes the file larger\n\
                             pinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=1, prot=rw)\n\
                             touch(m0[0..1], write)\np0 = pin_user_pages(m0[0..1], write)\n\
                             unpin(p0)\n";
        // A THP pin: new states (order 9, exact pincount).
        let thp = "pinfuzz v1 thp=always\nm0 = mmap(anon-private, pages=512, prot=rw)\n\
                   touch(m0[0..512], write)\np0 = pin_user_pages(m0[0..1], write)\nunpin(p0)\n";
        for (name, text) in [
            ("a-touch", touch),
            ("b-pin", pin),
            ("c-pin", pin_commented),
            ("d-thp", thp),
        ] {
            fs::write(dir.join(format!("{name}.ops")), text).expect("write");
        }
        let all: BTreeSet<Element> = ops_files(dir)
            .expect("list")
            .iter()
            .flat_map(|p| signature(&load(p).expect("load").program))
            .collect();

        let plan = plan(dir).expect("plan");
        let kept: Vec<String> = plan
            .keep
            .iter()
            .map(|(e, _)| {
                e.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let dropped: Vec<String> = plan
            .drop
            .iter()
            .map(|e| {
                e.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(kept, ["a-touch.ops", "b-pin.ops", "d-thp.ops"]);
        assert_eq!(dropped, ["c-pin.ops"]);
        assert_eq!(plan.elements, all.len());

        apply(&plan).expect("apply");
        let after: BTreeSet<Element> = ops_files(dir)
            .expect("list")
            .iter()
            .flat_map(|p| signature(&load(p).expect("load").program))
            .collect();
        assert_eq!(after, all, "minimization loses no element");
        assert!(!dir.join("c-pin.ops").exists());
        // A minimized corpus is a fixed point.
        assert!(super::plan(dir).expect("plan").drop.is_empty());
    }
}
