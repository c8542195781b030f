//! What libpq fills in when a connection string leaves it out: the `PG*`
//! environment variables and the password file (`~/.pgpass`), with libpq's
//! lookup rules, so no password needs to be on a command line.

use std::path::{Path, PathBuf};

/// One `host:port:database:username:password` line of a password file.
#[derive(Debug, PartialEq, Eq)]
struct PassEntry {
    fields: [String; 4],
    password: String,
}

/// The password for (host, port, database, user) in the file at `path`,
/// as libpq finds it: the first matching line, `*` matching anything, `\:`
/// and `\\` escapes. A file that group or others can access is ignored
/// with a warning, as libpq ignores it.
pub(crate) fn pgpass_password(path: &Path, wanted: [&str; 4]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    if metadata.mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or \
             less; it is ignored",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .find(|entry| {
            entry
                .fields
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value)
        })
        .map(|entry| entry.password)
}

fn parse_line(line: &str) -> Option<PassEntry> {
    let mut parts = Vec::with_capacity(5);
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' if parts.len() < 4 => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    let [host, port, database, user, password]: [String; 5] = parts.try_into().ok()?;
    Some(PassEntry {
        fields: [host, port, database, user],
        password,
    })
}

/// The password file: `PGPASSFILE`, else `.pgpass` in `home`.
pub(crate) fn pgpass_path(
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(path) = env("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(path.into());
    }
    home.map(|home| home.join(".pgpass"))
}

/// The user's home folder, as `directories` finds it (`$HOME`, else the
/// password database).
pub(crate) fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pgpass(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(".pgpass");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = pgpass(
            dir.path(),
            "# comment\n\
             other:5432:*:monitor:nope\n\
             db:5432:shop:monitor:s3\\:cr\\\\et\n\
             *:*:*:monitor:fallback\n",
            0o600,
        );
        assert_eq!(
            pgpass_password(&path, ["db", "5432", "shop", "monitor"]).as_deref(),
            Some("s3:cr\\et")
        );
        assert_eq!(
            pgpass_password(&path, ["db", "5433", "shop", "monitor"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_password(&path, ["db", "5432", "shop", "app"]), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = pgpass(dir.path(), "*:*:*:*:secret\n", 0o644);
        assert_eq!(pgpass_password(&path, ["h", "5432", "d", "u"]), None);
    }

    #[test]
    fn pgpassfile_overrides_home() {
        let home = Some(Path::new("/home/op"));
        let env = |key: &str| (key == "PGPASSFILE").then(|| "/etc/pg/pass".to_owned());
        assert_eq!(pgpass_path(&env, home), Some(PathBuf::from("/etc/pg/pass")));
        let env = |_: &str| None;
        assert_eq!(
            pgpass_path(&env, home),
            Some(PathBuf::from("/home/op/.pgpass"))
        );
        assert_eq!(pgpass_path(&env, None), None);
    }
}
