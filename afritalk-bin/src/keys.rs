//! The root key pair of the embedded default. On first start it is created in
//! the data directory (directory 0700, private key file 0600); production sets
//! `AFRITALK_ROOT_PUBLIC_KEY` instead and holds no private key at all.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use afritalk_auth::{RootKeyPair, RootPublicKey};

use crate::config::Config;

/// Why the keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key was not valid hex of an Ed25519 key.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which key.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the data directory (owner-only) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> Result<(), KeyFileError> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// The private key file inside the data directory.
pub fn private_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("root-private-key.hex")
}

/// The root key pair: from `AFRITALK_ROOT_PRIVATE_KEY`, else the data directory's
/// file, created (0600) on first use.
pub fn root_key_pair(config: &Config) -> Result<RootKeyPair, KeyFileError> {
    if let Some(hex) = &config.root_private_key {
        return parse_private(hex.expose());
    }
    ensure_data_dir(&config.data_dir)?;
    let path = private_key_path(&config.data_dir);
    match fs::read_to_string(&path) {
        Ok(hex) => parse_private(hex.trim()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let pair = RootKeyPair::generate();
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_error(&path))?;
            file.write_all(pair.to_hex().as_bytes())
                .map_err(io_error(&path))?;
            tracing::info!(path = %path.display(), "created a root key pair for development tokens");
            Ok(pair)
        }
        Err(err) => Err(io_error(&path)(err)),
    }
}

/// The public key the server verifies with: `AFRITALK_ROOT_PUBLIC_KEY` when set,
/// else the public half of [`root_key_pair`].
pub fn root_public_key(config: &Config) -> Result<RootPublicKey, KeyFileError> {
    match &config.root_public_key {
        Some(hex) => RootPublicKey::from_hex(hex.trim()).map_err(|e| KeyFileError::Invalid {
            what: "AFRITALK_ROOT_PUBLIC_KEY",
            reason: e.to_string(),
        }),
        None => Ok(root_key_pair(config)?.public()),
    }
}

fn parse_private(hex: &str) -> Result<RootKeyPair, KeyFileError> {
    RootKeyPair::from_hex(hex).map_err(|e| KeyFileError::Invalid {
        what: "root private key",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::from_lookup(|_| None).unwrap();
        c.data_dir = dir.join("data");
        c
    }

    #[test]
    fn the_key_pair_is_created_once_with_owner_only_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let first = root_key_pair(&config).unwrap();
        let second = root_key_pair(&config).unwrap();
        assert_eq!(first.to_hex(), second.to_hex());
        let file_mode = fs::metadata(private_key_path(&config.data_dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&config.data_dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn a_configured_public_key_wins_and_bad_hex_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = config_in(tmp.path());
        let pair = RootKeyPair::generate();
        config.root_public_key = Some(pair.public().to_hex());
        assert_eq!(
            root_public_key(&config).unwrap().to_hex(),
            pair.public().to_hex()
        );
        // No key file was created: the server holds no private key.
        assert!(!private_key_path(&config.data_dir).exists());
        config.root_public_key = Some("zz".into());
        assert!(root_public_key(&config).is_err());
    }
}
