//! Where the secrets file sits relative to the SQLite database: beside it, one copy of the
//! directory holds both the key hashes and the pepper that protects them.

use std::path::{Path, PathBuf};

use super::SecretsSource;

/// The secrets file in use when it sits in the same directory as the SQLite database, and the
/// deployment is not a local development one (`local_dev`): `keyplane serve` then warns, because
/// one copy of that directory (a backup, a snapshot, a stolen volume) holds both the key hashes
/// and the pepper that makes them useless to a thief. Secrets from the environment, and
/// PostgreSQL databases, are never beside each other.
pub fn misplaced_secrets(
    source: &SecretsSource,
    database_url: &str,
    local_dev: bool,
) -> Option<PathBuf> {
    let secrets = match source {
        SecretsSource::File(path) | SecretsSource::Generated(path) => path,
        SecretsSource::Environment => return None,
    };
    if local_dev {
        return None;
    }
    let database = sqlite_file(database_url)?;
    let directory = |file: &Path| {
        let parent = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::canonicalize(&parent).unwrap_or(parent)
    };
    (directory(secrets) == directory(&database)).then(|| secrets.clone())
}

/// The file of a `sqlite:` URL (`sqlite://path?mode=rwc`, `sqlite:path`); none for other
/// databases and for in-memory SQLite.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_file_beside_the_sqlite_file_is_misplaced_outside_local_development() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = dir.path().join("secrets.json");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("keyplane.db").display()
        );
        for source in [
            SecretsSource::File(secrets.clone()),
            SecretsSource::Generated(secrets.clone()),
        ] {
            assert_eq!(
                misplaced_secrets(&source, &url, false),
                Some(secrets.clone())
            );
            assert_eq!(misplaced_secrets(&source, &url, true), None, "local dev");
        }
        // The same directory written another way is still the same directory.
        let dotted = format!("sqlite:{}/./keyplane.db", dir.path().display());
        let source = SecretsSource::File(secrets.clone());
        assert_eq!(misplaced_secrets(&source, &dotted, false), Some(secrets));
    }

    #[test]
    fn secrets_apart_from_the_database_or_from_the_environment_are_not_misplaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let apart = dir.path().join("secrets");
        std::fs::create_dir(&apart).expect("dir");
        let secrets = SecretsSource::File(apart.join("secrets.json"));
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("keyplane.db").display()
        );
        assert_eq!(misplaced_secrets(&secrets, &url, false), None);
        let beside = format!("sqlite://{}", apart.join("keyplane.db").display());
        assert_eq!(
            misplaced_secrets(&SecretsSource::Environment, &beside, false),
            None,
            "no file at all"
        );
        for other in [
            "postgres://postgres@127.0.0.1:5432/keyplane",
            "sqlite::memory:",
            "sqlite://",
        ] {
            assert_eq!(misplaced_secrets(&secrets, other, false), None, "{other}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_working_directory() {
        let source = SecretsSource::File(PathBuf::from("secrets.json"));
        assert!(misplaced_secrets(&source, "sqlite:keyplane.db", false).is_some());
        assert!(misplaced_secrets(&source, "sqlite://./keyplane.db?mode=rwc", false).is_some());
        assert!(misplaced_secrets(&source, "sqlite://data/keyplane.db", false).is_none());
    }
}
