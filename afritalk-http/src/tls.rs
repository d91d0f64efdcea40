//! TLS 1.3 termination with rustls, for a server that faces clients directly
//! instead of behind a proxy. The certificate chain and private key come from
//! PEM files and can be reloaded while serving (a renewed certificate takes
//! effect for new connections; open ones keep theirs), so renewing never means
//! dropping every socket with a restart. The crypto is aws-lc-rs, whose key
//! exchange prefers the post-quantum hybrid X25519MLKEM768: the traffic of
//! clients that offer it (current browsers do) stays private even against a
//! later quantum computer; others get X25519.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// Where the server's certificate chain and private key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no readable PEM certificate.
    #[error("{path} holds no PEM certificate ({reason})")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key file holds no readable PEM private key.
    #[error("{path} holds no PEM private key ({reason})")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// rustls refused the TLS 1.3 settings themselves (no certificate involved).
    #[error("TLS 1.3 cannot be configured: {0}")]
    Settings(String),
    /// The key is unusable or is not the certificate's.
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// TLS 1.3 for the listener: accepts connections with the current certificate,
/// which [`Tls::reload`] replaces without a restart.
#[derive(Clone)]
pub struct Tls {
    files: Arc<TlsFiles>,
    current: Arc<CurrentCertificate>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads `files` and builds a TLS 1.3-only acceptor offering HTTP/2 and
    /// HTTP/1.1 (websockets need the latter).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let certified = certified_key(&files, &provider)?;
        let current = Arc::new(CurrentCertificate {
            key: RwLock::new(Arc::new(certified)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Settings(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            files: Arc::new(files),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; new connections get the new certificate. On
    /// error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let provider = aws_lc_rs::default_provider();
        let certified = certified_key(&self.files, &provider)?;
        *self
            .current
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(())
    }

    /// The files this acceptor reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Runs the server side of a handshake on `stream` (the caller bounds its time).
    pub(crate) async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// The certificate handed to every new handshake; swapped by a reload.
#[derive(Debug)]
struct CurrentCertificate {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.key
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Reads the chain and key of `files` and checks that the key is the certificate's.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A self-signed certificate for localhost and its key, as PEM.
    fn self_signed() -> (String, String) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (pair.cert.pem(), pair.signing_key.serialize_pem())
    }

    /// `cert` and `key` written to files in `dir`.
    fn write(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("chain.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    /// The DER of the certificate new handshakes get.
    fn served(tls: &Tls) -> Vec<u8> {
        let current = tls.current.key.read().unwrap().clone();
        current.cert[0].as_ref().to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let tls = Tls::load(write(dir.path(), &cert, &key)).unwrap();
        assert_eq!(served(&tls), der(&cert));
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = Tls::load(files).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("absent.pem"), "{err}");
    }

    #[test]
    fn files_without_pem_sections_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let err = Tls::load(write(dir.path(), "not a certificate", &key)).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = Tls::load(write(dir.path(), &cert, &cert)).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let err = Tls::load(write(dir.path(), &cert, &other_key)).unwrap_err();
        assert!(matches!(err, TlsError::Unusable { .. }), "{err}");
    }

    #[test]
    fn a_reload_serves_the_renewed_certificate_and_a_failed_one_keeps_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let (old_cert, old_key) = self_signed();
        let tls = Tls::load(write(dir.path(), &old_cert, &old_key)).unwrap();

        let (new_cert, new_key) = self_signed();
        write(dir.path(), &new_cert, &new_key);
        tls.reload().unwrap();
        assert_eq!(served(&tls), der(&new_cert));

        // Half-written renewal: the new chain with the previous key.
        let (newer_cert, _) = self_signed();
        write(dir.path(), &newer_cert, &new_key);
        assert!(matches!(tls.reload(), Err(TlsError::Unusable { .. })));
        assert_eq!(served(&tls), der(&new_cert));
    }
}
