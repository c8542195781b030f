//! The TLS client side shared by the remote terminal dashboard and the
//! alert notifiers: rustls with ring, trusting a CA file or the system's
//! roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

/// Why a connector cannot be built.
#[derive(Debug)]
pub(crate) enum ConnectorError {
    /// The CA file cannot be used.
    CaCert(String),
    /// rustls refused the configuration.
    Config(String),
}

/// A TLS connector trusting `ca_cert`, or the system's roots.
pub(crate) fn connector(ca_cert: Option<&Path>) -> Result<TlsConnector, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let bad = |reason: String| ConnectorError::CaCert(reason);
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| bad(err.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in the file".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|err| bad(err.to_string()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| ConnectorError::Config(err.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
