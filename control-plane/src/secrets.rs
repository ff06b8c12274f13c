//! The deployment's secrets: the lookup-digest peppers, the audit signing secret and the edge
//! secret (which signs pushes to edges and their pulls of the feed; shared with every edge).
//!
//! Each comes from an environment variable when set (`KEYPLANE_PEPPERS`,
//! `KEYPLANE_SIGNING_SECRET`, `KEYPLANE_EDGE_SECRET`), else from `secrets.json` in the data
//! directory. Whatever is in neither is generated from the OS CSPRNG and written to that file
//! (mode 0600, keeping what it already held), and the log says so once. Without the pepper no
//! stored key can be verified again, so the file must be backed up (or the variables set) in any
//! real deployment.
//!
//! Formats: `KEYPLANE_PEPPERS` is a comma-separated list of `<id>:<base64 secret>`, newest first
//! (new keys use the first; older ones keep verifying); `KEYPLANE_SIGNING_SECRET` and
//! `KEYPLANE_EDGE_SECRET` are base64. Every secret is at least 32 bytes once decoded; a shorter
//! one stops the start with a message naming where it came from.
//!
//! A secrets file next to the SQLite file defeats the point of the pepper (one copy of the
//! directory holds the hashes and the pepper): [`misplaced_secrets`] says when that is so, and
//! `keyplane serve` warns about it unless it runs for local development.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_shared::sync::SyncSecret;
use keyplane_shared::{Pepper, PepperId, PepperSet};
use secrecy::{ExposeSecret as _, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

mod placement;
pub mod webhook_signing;
pub use placement::misplaced_secrets;

/// Length of generated secrets, in bytes.
const GENERATED_LEN: usize = 32;
/// Shortest signing secret accepted, in bytes (decoded), like the peppers and the edge secret.
pub const MIN_SIGNING_SECRET_LEN: usize = 32;

/// The secrets a running control plane holds.
pub struct Secrets {
    /// Lookup-digest peppers, current first.
    pub peppers: PepperSet,
    /// Signs the audit chain.
    pub signing_secret: SecretBox<Vec<u8>>,
    /// Signs pushes to edges and verifies their pulls (shared with every edge).
    pub edge_secret: SyncSecret,
    /// The peppers in `KEYPLANE_PEPPERS` form, for configuring edges (`keyplane edge-env`).
    pub peppers_text: SecretString,
    /// The edge secret in base64, for configuring edges.
    pub edge_secret_text: SecretString,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// Where the secrets came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsSource {
    /// Both from environment variables.
    Environment,
    /// Read from this file (at least partly).
    File(PathBuf),
    /// Generated just now into this file.
    Generated(PathBuf),
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peppers: Vec<StoredPepper>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edge_secret: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPepper {
    id: u8,
    secret: String,
}

/// Loads the secrets as the module docs describe. `env` reads one environment variable.
pub fn load(
    data_dir: &Path,
    env: impl Fn(&str) -> Option<SecretString>,
) -> anyhow::Result<(Secrets, SecretsSource)> {
    let path = data_dir.join("secrets.json");
    let env_peppers = env("KEYPLANE_PEPPERS");
    let env_signing = env("KEYPLANE_SIGNING_SECRET");
    let env_edge = env("KEYPLANE_EDGE_SECRET");
    if let (Some(peppers), Some(signing), Some(edge)) = (&env_peppers, &env_signing, &env_edge) {
        let secrets = Secrets {
            peppers: parse_peppers(peppers.expose_secret()).context("KEYPLANE_PEPPERS")?,
            signing_secret: SecretBox::new(Box::new(
                signing_secret(signing.expose_secret()).context("KEYPLANE_SIGNING_SECRET")?,
            )),
            edge_secret: edge_secret(edge.expose_secret()).context("KEYPLANE_EDGE_SECRET")?,
            peppers_text: peppers.clone(),
            edge_secret_text: edge.clone(),
        };
        return Ok((secrets, SecretsSource::Environment));
    }

    let mut file: SecretsFile = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("reading {} (invalid JSON)", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => SecretsFile::default(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mut generated = false;
    if env_peppers.is_none() && file.peppers.is_empty() {
        file.peppers.push(StoredPepper {
            id: 1,
            secret: BASE64.encode(random_secret()?),
        });
        generated = true;
    }
    if env_signing.is_none() && file.signing_secret.is_none() {
        file.signing_secret = Some(BASE64.encode(random_secret()?));
        generated = true;
    }
    if env_edge.is_none() && file.edge_secret.is_none() {
        file.edge_secret = Some(BASE64.encode(random_secret()?));
        generated = true;
    }
    if generated {
        write_private(&path, &serde_json::to_vec_pretty(&file)?)?;
    }

    let peppers = match &env_peppers {
        Some(text) => parse_peppers(text.expose_secret()).context("KEYPLANE_PEPPERS")?,
        None => {
            let list: Vec<Pepper> = file
                .peppers
                .iter()
                .map(|p| Ok(Pepper::new(PepperId(p.id), &decode(&p.secret)?)?))
                .collect::<anyhow::Result<_>>()
                .with_context(|| format!("peppers in {}", path.display()))?;
            pepper_set(list)?
        }
    };
    let signing_secret = match (&env_signing, &file.signing_secret) {
        (Some(text), _) => {
            signing_secret(text.expose_secret()).context("KEYPLANE_SIGNING_SECRET")?
        }
        (None, Some(text)) => {
            signing_secret(text).with_context(|| format!("signing_secret in {}", path.display()))?
        }
        (None, None) => bail!("no signing secret"),
    };
    let edge_secret_text = match (&env_edge, &file.edge_secret) {
        (Some(text), _) => text.clone(),
        (None, Some(text)) => SecretString::from(text.clone()),
        (None, None) => bail!("no edge secret"),
    };
    let peppers_text = match &env_peppers {
        Some(text) => text.clone(),
        None => SecretString::from(
            file.peppers
                .iter()
                .map(|p| format!("{}:{}", p.id, p.secret))
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    let secrets = Secrets {
        peppers,
        signing_secret: SecretBox::new(Box::new(signing_secret)),
        edge_secret: edge_secret(edge_secret_text.expose_secret()).with_context(|| {
            format!("KEYPLANE_EDGE_SECRET or edge_secret in {}", path.display())
        })?,
        peppers_text,
        edge_secret_text,
    };
    let source = if generated {
        SecretsSource::Generated(path)
    } else {
        SecretsSource::File(path)
    };
    Ok((secrets, source))
}

fn parse_peppers(text: &str) -> anyhow::Result<PepperSet> {
    Ok(text.parse::<PepperSet>()?)
}

fn pepper_set(list: Vec<Pepper>) -> anyhow::Result<PepperSet> {
    let mut list = list.into_iter();
    let current = list.next().context("no pepper given")?;
    Ok(PepperSet::new(current, list)?)
}

fn edge_secret(text: &str) -> anyhow::Result<SyncSecret> {
    SyncSecret::new(decode(text)?).map_err(|error| anyhow::anyhow!("{error}"))
}

fn signing_secret(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = decode(text)?;
    if bytes.len() < MIN_SIGNING_SECRET_LEN {
        bail!(
            "the signing secret must be at least {MIN_SIGNING_SECRET_LEN} bytes once decoded, \
             got {}",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn decode(text: &str) -> anyhow::Result<Vec<u8>> {
    BASE64
        .decode(text.trim())
        .context("not valid base64 (standard alphabet, padded)")
}

fn random_secret() -> anyhow::Result<[u8; GENERATED_LEN]> {
    let mut bytes = [0u8; GENERATED_LEN];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("OS CSPRNG: {error}"))?;
    Ok(bytes)
}

/// Writes `bytes` to `path` readable by the owner only, atomically (temporary file + rename).
///
/// A temporary file left by an interrupted earlier write is removed first and the new one is
/// created afresh (`create_new`, mode 0600): opening the stale one would keep its mode (say
/// 0644), and a stale symlink would send the secrets elsewhere. The mode is set again on the
/// open file, whatever the umask did.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("json.tmp");
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("removing the stale {}", temporary.display()));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", temporary.display()))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<SecretString> {
        None
    }

    #[test]
    fn first_start_generates_a_private_file_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (first, source) = load(dir.path(), no_env).expect("generated");
        assert_eq!(
            source,
            SecretsSource::Generated(dir.path().join("secrets.json"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("secrets.json"))
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = load(dir.path(), no_env).expect("read back");
        assert!(matches!(source, SecretsSource::File(_)));
        assert_eq!(
            first.signing_secret.expose_secret(),
            second.signing_secret.expose_secret()
        );
        assert_eq!(first.peppers.current().id(), second.peppers.current().id());
        assert_eq!(
            first.edge_secret_text.expose_secret(),
            second.edge_secret_text.expose_secret()
        );
        assert_ne!(
            first.edge_secret_text.expose_secret(),
            BASE64.encode(first.signing_secret.expose_secret())
        );
    }

    #[test]
    fn an_older_file_without_an_edge_secret_gains_one_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secrets.json");
        let pepper = BASE64.encode([4u8; 32]);
        let signing = BASE64.encode([6u8; 32]);
        let older = serde_json::json!({
            "peppers": [{"id": 2, "secret": pepper}],
            "signing_secret": signing,
        });
        std::fs::write(&path, older.to_string()).expect("write");
        let (secrets, source) = load(dir.path(), no_env).expect("loaded");
        assert_eq!(source, SecretsSource::Generated(path.clone()));
        assert_eq!(secrets.peppers_text.expose_secret(), format!("2:{pepper}"));
        assert_eq!(secrets.signing_secret.expose_secret(), &vec![6u8; 32]);
        let rewritten: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        assert_eq!(rewritten["peppers"], older["peppers"]);
        assert_eq!(rewritten["signing_secret"], older["signing_secret"]);
        let edge = rewritten["edge_secret"].as_str().expect("an edge secret");
        assert_eq!(edge, secrets.edge_secret_text.expose_secret());
        assert_eq!(BASE64.decode(edge).expect("base64").len(), GENERATED_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = load(dir.path(), no_env).expect("read back");
        assert_eq!(source, SecretsSource::File(path));
        assert_eq!(again.edge_secret_text.expose_secret(), edge);
    }

    #[test]
    fn a_short_edge_secret_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = |name: &str| match name {
            "KEYPLANE_EDGE_SECRET" => Some(SecretString::from(BASE64.encode([1u8; 16]))),
            _ => None,
        };
        let error = load(dir.path(), env).expect_err("16 bytes is too short");
        assert!(
            format!("{error:#}").contains("KEYPLANE_EDGE_SECRET"),
            "{error:#}"
        );
    }

    #[test]
    fn a_signing_secret_shorter_than_32_bytes_is_refused_with_its_source_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let short = |name: &str| match name {
            "KEYPLANE_PEPPERS" => Some(SecretString::from(format!(
                "1:{}",
                BASE64.encode([1u8; 32])
            ))),
            "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(BASE64.encode([2u8; 8]))),
            "KEYPLANE_EDGE_SECRET" => Some(SecretString::from(BASE64.encode([3u8; 32]))),
            _ => None,
        };
        let error = format!("{:#}", load(dir.path(), short).expect_err("8 bytes"));
        assert!(error.contains("KEYPLANE_SIGNING_SECRET"), "{error}");
        assert!(error.contains("at least 32 bytes"), "{error}");
        assert!(error.contains("got 8"), "{error}");
        // Only the signing secret from the environment: the file holds the rest.
        let alone = |name: &str| short(name).filter(|_| name == "KEYPLANE_SIGNING_SECRET");
        let error = format!("{:#}", load(dir.path(), alone).expect_err("8 bytes"));
        assert!(error.contains("KEYPLANE_SIGNING_SECRET"), "{error}");

        let path = dir.path().join("secrets.json");
        let file = serde_json::json!({
            "peppers": [{"id": 1, "secret": BASE64.encode([4u8; 32])}],
            "signing_secret": BASE64.encode([6u8; 31]),
            "edge_secret": BASE64.encode([5u8; 32]),
        });
        std::fs::write(&path, file.to_string()).expect("write");
        let error = format!("{:#}", load(dir.path(), no_env).expect_err("31 bytes"));
        assert!(error.contains("signing_secret in"), "{error}");
        assert!(error.contains("got 31"), "{error}");

        let exact = |name: &str| match name {
            "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(BASE64.encode([2u8; 32]))),
            _ => None,
        };
        let (secrets, _) = load(dir.path(), exact).expect("32 bytes is enough");
        assert_eq!(secrets.signing_secret.expose_secret().len(), 32);
    }

    #[cfg(unix)]
    #[test]
    fn the_secrets_file_is_private_even_when_a_stale_temporary_file_is_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let stale = dir.path().join("secrets.json.tmp");
        std::fs::write(&stale, b"left by an interrupted write").expect("stale file");
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).expect("0644");
        let (secrets, source) = load(dir.path(), no_env).expect("generated");
        let path = dir.path().join("secrets.json");
        assert_eq!(source, SecretsSource::Generated(path.clone()));
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert!(!stale.exists(), "the temporary file was renamed into place");
        let (again, _) = load(dir.path(), no_env).expect("read back");
        assert_eq!(
            again.signing_secret.expose_secret(),
            secrets.signing_secret.expose_secret()
        );
    }

    #[test]
    fn environment_variables_take_precedence_and_write_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = BASE64.encode([7u8; 32]);
        let old = BASE64.encode([8u8; 32]);
        let env = |name: &str| match name {
            "KEYPLANE_PEPPERS" => Some(SecretString::from(format!("3:{secret}, 2:{old}"))),
            "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(secret.clone())),
            "KEYPLANE_EDGE_SECRET" => Some(SecretString::from(BASE64.encode([5u8; 32]))),
            _ => None,
        };
        let (secrets, source) = load(dir.path(), env).expect("from env");
        assert_eq!(source, SecretsSource::Environment);
        let ids: Vec<u8> = secrets.peppers.iter().map(|p| p.id().0).collect();
        assert_eq!(ids, [3, 2]);
        assert!(!dir.path().join("secrets.json").exists());
        assert_eq!(
            secrets.edge_secret_text.expose_secret(),
            BASE64.encode([5u8; 32])
        );
    }

    #[test]
    fn malformed_secrets_are_refused_with_the_variable_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = |name: &str| match name {
            "KEYPLANE_PEPPERS" => Some(SecretString::from("one:abc".to_owned())),
            "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(BASE64.encode([1u8; 32]))),
            _ => None,
        };
        let error = load(dir.path(), env).expect_err("refused");
        assert!(
            format!("{error:#}").contains("KEYPLANE_PEPPERS"),
            "{error:#}"
        );
        let short = |name: &str| match name {
            "KEYPLANE_PEPPERS" => {
                Some(SecretString::from(format!("1:{}", BASE64.encode([1u8; 4]))))
            }
            "KEYPLANE_SIGNING_SECRET" => Some(SecretString::from(BASE64.encode([1u8; 32]))),
            _ => None,
        };
        assert!(
            load(dir.path(), short).is_err(),
            "a 4-byte pepper is too short"
        );
    }
}
