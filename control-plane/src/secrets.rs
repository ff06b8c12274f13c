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
//! `KEYPLANE_EDGE_SECRET` are base64 (the edge secret at least 32 bytes).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_shared::sync::SyncSecret;
use keyplane_shared::{Pepper, PepperId, PepperSet};
use secrecy::{ExposeSecret as _, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

/// Length of generated secrets, in bytes.
const GENERATED_LEN: usize = 32;

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
                decode(signing.expose_secret()).context("KEYPLANE_SIGNING_SECRET")?,
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
        (Some(text), _) => decode(text.expose_secret()).context("KEYPLANE_SIGNING_SECRET")?,
        (None, Some(text)) => {
            decode(text).with_context(|| format!("signing_secret in {}", path.display()))?
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
    let list = text
        .split(',')
        .map(|item| {
            let (id, secret) = item
                .trim()
                .split_once(':')
                .context("expected `<id>:<base64 secret>`")?;
            let id: u8 = id.parse().context("pepper id must be 0..=255")?;
            Ok(Pepper::new(PepperId(id), &decode(secret)?)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    pepper_set(list)
}

fn pepper_set(list: Vec<Pepper>) -> anyhow::Result<PepperSet> {
    let mut list = list.into_iter();
    let current = list.next().context("no pepper given")?;
    Ok(PepperSet::new(current, list)?)
}

fn edge_secret(text: &str) -> anyhow::Result<SyncSecret> {
    SyncSecret::new(decode(text)?).map_err(|error| anyhow::anyhow!("{error}"))
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
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
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
