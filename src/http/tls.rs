//! HTTPS for our own server: a certificate and key (PEM) read from files
//! and read again when either changes on disk, so a certificate rotated by
//! cert-manager or certbot during a days-long migration is served to new
//! connections without a restart; open connections keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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

use crate::persist::{Links, read_small_file};

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

/// Most bytes read from a certificate or key file: a chain is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Serves the certificate last read. When the files change (checked at
/// each new connection: two `stat`s, which never block), they are read
/// again on a blocking thread, off the handshake: that connection and
/// those until the read ends get the previous certificate. A pair that
/// cannot be read (a FIFO, a device, too large, missing) or does not
/// match keeps the previous one in use, with a warning.
struct Reloading(Arc<Shared>);

struct Shared {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    stamp: Mutex<Stamp>,
    /// A read is under way: changes seen meanwhile wait for it.
    reading: AtomicBool,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.0.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let shared = &self.0;
        let changed = {
            let now = stamp(&shared.files);
            let mut seen = shared
                .stamp
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Unchanged, or a read under way (it is seen again after).
            if *seen == now || shared.reading.swap(true, Ordering::AcqRel) {
                false
            } else {
                *seen = now;
                true
            }
        };
        if changed {
            let shared = Arc::clone(shared);
            let read = move || {
                match load(&shared.files, &shared.provider) {
                    Ok(key) => {
                        shared.current.store(Arc::new(key));
                        tracing::info!(cert = %shared.files.cert.display(), "serving a new certificate");
                    }
                    Err(err) => tracing::warn!("{err}; still serving the previous certificate"),
                }
                shared.reading.store(false, Ordering::Release);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(read)),
                Err(_) => read(),
            }
        }
        Some(shared.current.load_full())
    }
}

/// Reads and checks the pair: regular files only (a FIFO cannot hang the
/// read, a link to a device cannot fill memory), at most
/// [`MAX_PEM_BYTES`] each.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_shown = files.cert.display();
    let key_shown = files.key.display();
    let cert_pem = read_small_file(&files.cert, MAX_PEM_BYTES, Links::Follow)
        .map_err(|err| format!("--tls-cert {cert_shown}: {err}"))?;
    let key_pem = read_small_file(&files.key, MAX_PEM_BYTES, Links::Follow)
        .map_err(|err| format!("--tls-key {key_shown}: {err}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("--tls-cert {cert_shown}: {err}"))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {cert_shown}: no certificate in the file"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
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
    let resolver = Reloading(Arc::new(Shared {
        stamp: Mutex::new(stamp(files)),
        files: files.clone(),
        provider: Arc::clone(&provider),
        current: ArcSwap::from_pointee(first),
        reading: AtomicBool::new(false),
    }));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
