//! HTTPS for our own server: a certificate and key (PEM) read from files
//! and read again when either changes on disk, so a certificate rotated by
//! cert-manager or certbot during a days-long migration is served to new
//! connections without a restart; open connections keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Where the server's certificate chain and private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files and checks that they make a usable pair, so a
    /// mistake is reported before anything listens.
    pub fn check(&self) -> std::io::Result<()> {
        let provider = rustls::crypto::ring::default_provider();
        load(self, &provider)
            .map(drop)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))
    }
}

/// The files' identity: a change in either means reading them again.
type Stamp = (Option<SystemTime>, Option<SystemTime>, u64, u64);

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = |path: &Path| std::fs::metadata(path).ok();
    let (cert, key) = (meta(&files.cert), meta(&files.key));
    (
        cert.as_ref().and_then(|m| m.modified().ok()),
        key.as_ref().and_then(|m| m.modified().ok()),
        cert.map_or(0, |m| m.ino()),
        key.map_or(0, |m| m.ino()),
    )
}

/// Serves the certificate last read, reading the files again when they
/// changed (checked at each new connection: two `stat`s). A pair that
/// cannot be read or does not match keeps the previous one in use, with
/// a warning.
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    stamp: Mutex<Stamp>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = stamp(&self.files);
        let mut seen = self
            .stamp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *seen != now {
            *seen = now;
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    self.current.store(Arc::new(key));
                    tracing::info!(cert = %self.files.cert.display(), "serving a new certificate");
                }
                Err(err) => tracing::warn!("{err}; still serving the previous certificate"),
            }
        }
        Some(self.current.load_full())
    }
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_shown = files.cert.display();
    let key_shown = files.key.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("--tls-cert {cert_shown}: {err}"))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {cert_shown}: no certificate in the file"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| format!("--tls-key {key_shown}: {err}"))?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|err| format!("--tls-cert and --tls-key do not match: {err}"))?;
    Ok(certified)
}

/// The acceptor for `files`, which are read now: a missing or mismatched
/// pair fails here, before anything listens.
pub(super) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let first = load(files, &provider)?;
    let resolver = Reloading {
        stamp: Mutex::new(stamp(files)),
        files: files.clone(),
        provider: Arc::clone(&provider),
        current: ArcSwap::from_pointee(first),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
