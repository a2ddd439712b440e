//! Merging text corpora: the union of several directories of `.ops`
//! programs, without duplicates, in canonical form.
//!
//! Every `*.ops` file of every source is read (strictly, or leniently with
//! warnings for old files) and added to the destination [`TextCorpus`]
//! under its own file name, unless the destination already holds the same
//! canonical text. Sources are visited in the order given and files in path
//! order, so when two sources hold the same program the first one's name
//! wins. Files are written in canonical form; the sources are not changed.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::store::{Added, TextCorpus, load, ops_files};

/// Counts of a merge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Programs read from the sources.
    pub read: usize,
    /// Programs written to the destination.
    pub new: usize,
    /// Programs the destination held already (or an earlier source gave).
    pub duplicates: usize,
    /// Programs that needed the lenient reader.
    pub repaired: usize,
}

/// Merge every program of `sources` into `into`, calling `report` with each
/// file, its outcome and the lenient reader's warnings.
///
/// # Errors
///
/// A source that cannot be read or a file that cannot be written.
pub fn merge(
    into: &mut TextCorpus,
    sources: &[PathBuf],
    report: &mut dyn FnMut(&Path, &Added, &[String]),
) -> Result<MergeStats> {
    let mut stats = MergeStats::default();
    for source in sources {
        let files = if source.is_dir() {
            ops_files(source)?
        } else {
            vec![source.clone()]
        };
        for file in files {
            let loaded = load(&file)?;
            stats.read += 1;
            if !loaded.warnings.is_empty() {
                stats.repaired += 1;
            }
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let added = into.add(&loaded.program, name.as_deref())?;
            match added {
                Added::New(_) => stats.new += 1,
                Added::Duplicate(_) => stats.duplicates += 1,
            }
            report(&file, &added, &loaded.warnings);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn union_without_duplicates_in_canonical_form() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b, out) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("out"),
        );
        fs::create_dir_all(&a).expect("mkdir");
        fs::create_dir_all(b.join("sub")).expect("mkdir");
        let touch = "pinfuzz v1\nm0 = mmap(anon-private, pages=1)\ntouch(m0[0..1], write)\n";
        // The same program, not canonical (spacing, no prot=, missing settings).
        let touch_messy =
            "pinfuzz v1\n  m7 = mmap( anon-private , pages=1 )\ntouch(m7[0], write)\n";
        let pin = "# pins\npinfuzz v1 thp=never\nm0 = mmap(anon-private, pages=2)\n\
                   p0 = pin_user_pages(m0[0..2], write)\n";
        // An old file: an unknown header key and a step using a dead handle.
        let old = "pinfuzz v1 colour=blue\nm0 = mmap(anon-private, pages=1)\nunpin(p9)\n";
        fs::write(a.join("touch.ops"), touch).expect("write");
        fs::write(a.join("notes.txt"), "not a program").expect("write");
        fs::write(b.join("touch.ops"), touch_messy).expect("write");
        fs::write(b.join("sub/pin.ops"), pin).expect("write");
        fs::write(b.join("old.ops"), old).expect("write");

        let mut corpus = TextCorpus::open(&out).expect("open");
        let mut warned = Vec::new();
        let stats = merge(
            &mut corpus,
            &[a.clone(), b.clone()],
            &mut |file, _, warnings| {
                if !warnings.is_empty() {
                    warned.push(file.to_path_buf());
                }
            },
        )
        .expect("merge");
        assert_eq!(
            stats,
            MergeStats {
                read: 4,
                new: 3,
                duplicates: 1,
                repaired: 1
            }
        );
        // The messy copy reads strictly (names are labels, spacing is free).
        assert_eq!(warned, [b.join("old.ops")]);
        let mut names: Vec<String> = ops_files(&out)
            .expect("list")
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["old.ops", "pin.ops", "touch.ops"]);
        for file in ops_files(&out).expect("list") {
            let text = fs::read_to_string(&file).expect("read");
            let program = crate::op::Program::parse_strict(&text, "merged").expect("strict");
            assert_eq!(program.to_string(), text, "{} is canonical", file.display());
        }
        // Merging the result into itself, or the sources again, adds nothing.
        let again = merge(&mut corpus, &[out.clone(), a, b], &mut |_, _, _| {}).expect("merge");
        assert_eq!((again.new, again.duplicates), (0, 7));
    }
}
