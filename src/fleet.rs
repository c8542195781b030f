//! Many migrations in one process: the id each one is known by, and the
//! directories whose folders each hold one migration's state file
//! (`DIR/shop/state.json` is migration `shop`).
//!
//! ```
//! use std::path::Path;
//! use pgmigrator_metrics::fleet;
//!
//! let taken = ["shop".to_owned()];
//! let taken = |id: &str| taken.iter().any(|t| t == id);
//! let none = Default::default();
//! assert_eq!(fleet::id_for_state_file(Path::new("/srv/billing.json"), taken, &none), "billing");
//! assert_eq!(fleet::id_for_state_file(Path::new("/srv/shop/state.json"), taken, &none), "shop-2");
//! assert_eq!(fleet::id_for_name("../etc", taken), "-.-etc");
//! assert_eq!(fleet::state_file_in(Path::new("/srv"), "shop"), Path::new("/srv/shop/state.json"));
//! ```

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::persist::STATE_FILE_NAME;

/// Most migrations one process follows: a directory someone fills with
/// thousands of folders must not take every descriptor and task.
pub const MAX_MIGRATIONS: usize = 1000;

/// The id of the migration whose state file is `path`: the file's name
/// without `.json`, or its folder's name for a `state.json`; made unique
/// and safe by [`id_for_name`]. An id in `reserved` (see [`exact_ids`])
/// is only ever its own folder's.
pub fn id_for_state_file(
    path: &Path,
    taken: impl Fn(&str) -> bool,
    reserved: &HashSet<String>,
) -> String {
    let own = id_source(path).unwrap_or_else(|| "migration".to_owned());
    id_for_name(&own, |id| taken(id) || (id != own && reserved.contains(id)))
}

/// `name` (a subscription's, a folder's) as a migration id that is also a
/// safe folder name: characters an id cannot hold, and a leading `.`
/// (`..`, hidden folders), become `-`; at most 100 characters; an id for
/// which `taken` says yes gets `-2`, `-3`….
pub fn id_for_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let base: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) || (c == '.' && i > 0) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let base = if base.is_empty() {
        "migration".to_owned()
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while taken(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Whether `name` is an id as it is: [`id_for_name`] keeps it unchanged
/// when it is free. Such a name is never given to another migration whose
/// name had to be changed, so ids do not depend on the order folders are
/// found in.
pub fn is_id(name: &str) -> bool {
    id_for_name(name, |_| false) == name
}

/// The name a state file's id comes from: its folder's for a `state.json`,
/// else the file's own without `.json`.
fn id_source(path: &Path) -> Option<String> {
    match path.file_stem()?.to_string_lossy().as_ref() {
        "state" => Some(path.parent()?.file_name()?.to_string_lossy().into_owned()),
        stem => Some(stem.to_owned()),
    }
}

/// The names among `paths`' id sources that are ids as they are: those
/// another migration's changed name must not take.
pub fn exact_ids<'a>(paths: impl IntoIterator<Item = &'a Path>) -> HashSet<String> {
    paths
        .into_iter()
        .filter_map(id_source)
        .filter(|name| is_id(name))
        .collect()
}

/// Where migration `id` keeps its state in the fleet directory `dir`:
/// `DIR/ID/state.json`, the layout a [`WatchedDir`] finds.
pub fn state_file_in(dir: &Path, id: &str) -> PathBuf {
    dir.join(id).join(STATE_FILE_NAME)
}

/// A directory whose folders each hold one migration's `state.json`,
/// looked at again and again: each look yields the state files that
/// appeared since the last one.
#[derive(Debug)]
pub struct WatchedDir {
    dir: PathBuf,
    seen: HashSet<PathBuf>,
}

impl WatchedDir {
    /// Watches `dir`, failing now when it cannot be listed.
    pub fn open(dir: PathBuf) -> io::Result<WatchedDir> {
        state_files_in(&dir)?;
        Ok(WatchedDir {
            dir,
            seen: HashSet::new(),
        })
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every state file seen so far, served or not.
    pub fn seen(&self) -> impl Iterator<Item = &Path> {
        self.seen.iter().map(PathBuf::as_path)
    }

    /// What changed since the last look: the state files that appeared,
    /// in name order and at most `room` of them (the rest come in later
    /// looks), and those that are gone (their folder or file removed, or
    /// replaced by something that is not a real file). Only the
    /// `state.json` of real folders counts, never one reached through a
    /// symbolic link.
    pub fn look(&mut self, room: usize) -> io::Result<Changes> {
        let present = state_files_in(&self.dir)?;
        let mut gone: Vec<PathBuf> = self
            .seen
            .iter()
            .filter(|path| present.binary_search(path).is_err())
            .cloned()
            .collect();
        gone.sort();
        for path in &gone {
            self.seen.remove(path);
        }
        let mut appeared = present;
        appeared.retain(|path| !self.seen.contains(path));
        appeared.truncate(room);
        self.seen.extend(appeared.iter().cloned());
        Ok(Changes { appeared, gone })
    }
}

/// What a [`WatchedDir::look`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// State files to follow from now on.
    pub appeared: Vec<PathBuf>,
    /// State files followed until now that are gone.
    pub gone: Vec<PathBuf>,
}

/// The `state.json` of each folder directly in `dir` (real folders and
/// files, not links), in name order.
fn state_files_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let state = entry.path().join(STATE_FILE_NAME);
        if std::fs::symlink_metadata(&state).is_ok_and(|m| m.file_type().is_file()) {
            found.push(state);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_ids_come_from_file_or_directory_names_and_stay_unique() {
        let mut taken: Vec<String> = Vec::new();
        for path in [
            "/srv/shop/state.json",
            "/srv/billing.json",
            "/other/shop/state.json",
            "/srv/we ird/state.json",
            "state.json",
        ] {
            let id = id_for_state_file(
                Path::new(path),
                |id| taken.iter().any(|t| t == id),
                &HashSet::new(),
            );
            taken.push(id);
        }
        assert_eq!(taken, ["shop", "billing", "shop-2", "we-ird", "migration"]);
    }

    #[test]
    fn a_name_that_is_an_id_is_reserved_for_its_own_folder() {
        let paths = [
            Path::new("/srv/a b/state.json"),
            Path::new("/srv/a-b/state.json"),
            Path::new("/srv/billing.json"),
        ];
        let reserved = exact_ids(paths);
        assert_eq!(reserved.len(), 2, "{reserved:?}");
        assert!(is_id("a-b") && !is_id("a b") && !is_id(".x"));
        // Whichever comes first, `a b` never takes `a-b`.
        for order in [[0, 1], [1, 0]] {
            let mut taken: Vec<String> = Vec::new();
            for i in order {
                let id = id_for_state_file(paths[i], |id| taken.iter().any(|t| t == id), &reserved);
                taken.push(id);
            }
            taken.sort();
            assert_eq!(taken, ["a-b", "a-b-2"]);
        }
    }

    #[test]
    fn subscription_names_become_safe_folder_names() {
        let taken = |id: &str| id == "sub";
        assert_eq!(id_for_name("sub", taken), "sub-2");
        assert_eq!(id_for_name("..", taken), "-.");
        assert_eq!(id_for_name("../../etc", taken), "-.-..-etc");
        assert_eq!(id_for_name(".hidden", taken), "-hidden");
        assert_eq!(id_for_name("", taken), "migration");
        assert_eq!(id_for_name("Schön/sub", taken), "Sch-n-sub");
        assert_eq!(id_for_name(&"x".repeat(300), taken).len(), 100);
    }

    fn folder(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir(&path).unwrap();
        path
    }

    #[test]
    fn a_watched_directory_yields_each_new_state_file_once_and_each_removal() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(folder(dir.path(), name).join("state.json"), "{}").unwrap();
        }
        let mut watch = WatchedDir::open(dir.path().to_owned()).unwrap();
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| {
                    p.parent()
                        .unwrap()
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(names(watch.look(2).unwrap().appeared), ["a", "b"]);
        assert_eq!(names(watch.look(0).unwrap().appeared), Vec::<String>::new());
        std::fs::write(folder(dir.path(), "d").join("state.json"), "{}").unwrap();
        assert_eq!(names(watch.look(10).unwrap().appeared), ["c", "d"]);
        assert_eq!(watch.look(10).unwrap(), Changes::default());
        // Removed, then back: gone once, then it appears again.
        std::fs::remove_dir_all(dir.path().join("b")).unwrap();
        let changes = watch.look(10).unwrap();
        assert_eq!(
            (names(changes.appeared), names(changes.gone)),
            (vec![], vec!["b".to_owned()])
        );
        std::fs::write(folder(dir.path(), "b").join("state.json"), "{}").unwrap();
        assert_eq!(names(watch.look(10).unwrap().appeared), ["b"]);
    }

    #[test]
    fn a_watched_directory_yields_the_state_json_of_real_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(folder(dir.path(), "shop").join("state.json"), "{}").unwrap();
        folder(dir.path(), "empty");
        std::fs::create_dir(folder(dir.path(), "nested").join("state.json")).unwrap();
        std::fs::write(dir.path().join("loose.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("shop"), dir.path().join("link")).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("secret"), "{}").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("secret"),
            folder(dir.path(), "planted").join("state.json"),
        )
        .unwrap();
        let mut watch = WatchedDir::open(dir.path().to_owned()).unwrap();
        assert_eq!(
            watch.look(MAX_MIGRATIONS).unwrap().appeared,
            [dir.path().join("shop").join("state.json")]
        );
    }

    #[test]
    fn a_directory_that_cannot_be_listed_fails_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(WatchedDir::open(file).is_err());
        assert!(WatchedDir::open(dir.path().join("missing")).is_err());
    }
}
