//! The root key pair of the embedded default. On first start it is created in
//! the data directory (directory 0700, private key file 0600); production sets
//! `AFRITALK_ROOT_PUBLIC_KEY` instead and holds no private key at all.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
    /// The data directory or key file can be read or written by other users.
    #[error(
        "{path}: readable or writable by other users (mode {mode:o}); \
         run `chmod {wanted:o} {path}` and start again"
    )]
    TooOpen {
        /// The directory or file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// The mode it needs.
        wanted: u32,
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

/// Creates the data directory (owner-only) if it does not exist, and refuses
/// one that other users may read or write: whoever can write there could
/// plant a root key of their own, and sign tokens for any tenant and role.
pub fn ensure_data_dir(dir: &Path) -> Result<(), KeyFileError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    owner_only(dir, 0o700)
}

/// Refuses `path` if group or others have any access to it.
fn owner_only(path: &Path, wanted: u32) -> Result<(), KeyFileError> {
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(KeyFileError::TooOpen {
            path: path.display().to_string(),
            mode,
            wanted,
        })
    }
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
    match read_key_file(&path) {
        Err(KeyFileError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            create_key_file(&path)
        }
        other => other,
    }
}

/// The key pair of an existing key file, which must be owner-only.
fn read_key_file(path: &Path) -> Result<RootKeyPair, KeyFileError> {
    let hex = fs::read_to_string(path).map_err(io_error(path))?;
    owner_only(path, 0o600)?;
    RootKeyPair::from_hex(hex.trim()).map_err(|e| KeyFileError::Invalid {
        what: "root private key",
        reason: format!("{}: {e}", path.display()),
    })
}

/// Creates the key file whole or not at all: written to a file of its own,
/// synced, then linked into place. Two processes starting together get the
/// same key (the second reads the first's), and a crash midway leaves no
/// empty key file behind to stop every later start.
fn create_key_file(path: &Path) -> Result<RootKeyPair, KeyFileError> {
    let pair = RootKeyPair::generate();
    let draft = path.with_extension(format!("hex.{}.draft", uuid::Uuid::new_v4().simple()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&draft)
        .and_then(|mut file| {
            file.write_all(pair.to_hex().as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::hard_link(&draft, path));
    let _ = fs::remove_file(&draft);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a root key pair for development tokens");
            Ok(pair)
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => read_key_file(path),
        Err(err) => Err(io_error(path)(err)),
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
    fn a_data_directory_or_key_file_others_can_reach_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        root_key_pair(&config).unwrap();
        let key = private_key_path(&config.data_dir);
        let chmod = |path: &Path, mode| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        };
        chmod(&key, 0o644);
        let err = root_key_pair(&config).unwrap_err();
        assert!(
            matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        chmod(&key, 0o600);
        chmod(&config.data_dir, 0o755);
        let err = root_key_pair(&config).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        chmod(&config.data_dir, 0o700);
        root_key_pair(&config).unwrap();
    }

    #[test]
    fn processes_starting_together_share_one_key_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config_in(tmp.path());
        let keys: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| root_key_pair(&config).unwrap().to_hex()))
                .collect();
            starts.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]));
        // No draft is left beside the key.
        let files: Vec<_> = fs::read_dir(&config.data_dir).unwrap().collect();
        assert_eq!(files.len(), 1);
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
