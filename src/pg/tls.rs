//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls (no
//! OpenSSL).
//!
//! | `sslmode` | encrypts | verifies |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow` | if the server insists | nothing |
//! | `prefer` (default) | if the server can | nothing |
//! | `require` | always | nothing; the chain when `sslrootcert` is given (as libpq) |
//! | `verify-ca` | always | the chain |
//! | `verify-full` | always | the chain and the host name |
//!
//! `sslrootcert` is a PEM file, or `system` for the operating system's
//! trust store (as libpq 16). `sslcert` and `sslkey` log in with a client
//! certificate; a key file that group or others can read is refused, as
//! libpq refuses it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Plain first; encrypt if the server refuses plain connections.
    Allow,
    /// Encrypt if the server can, without verifying it (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt; verify the chain only when `sslrootcert` is given.
    Require,
    /// Always encrypt and verify the certificate chain.
    VerifyCa,
    /// Always encrypt and verify the chain and the host name.
    VerifyFull,
}

impl SslMode {
    /// The name as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is asked for: it knows only three modes; the
    /// difference in verifying lies in our certificate verifier.
    pub(crate) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Allow | SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full"
                        .to_owned(),
                );
            }
        })
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    File(PathBuf),
    System,
}

impl RootCert {
    /// An `sslrootcert` setting: `system`, or a file.
    pub(crate) fn from_setting(value: String) -> RootCert {
        if value == "system" {
            RootCert::System
        } else {
            RootCert::File(value.into())
        }
    }
}

/// A connection's TLS settings, as libpq reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<RootCert>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the server's chain is checked against trusted roots.
    fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            // libpq: `require` with a root certificate behaves as verify-ca.
            SslMode::Require => self.root_cert.is_some(),
            _ => false,
        }
    }

    /// The rustls connector for these settings. Files are read now, so a
    /// missing or unsafe one fails before any connection.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?;
        let chain = if self.verifies_chain() {
            let roots = Arc::new(self.roots()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|err| format!("the root certificates cannot be used: {err}"))?;
            Some(webpki)
        } else {
            None
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => webpki,
            chain => Arc::new(Lenient { chain, provider }),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "sslcert")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|err| format!("sslcert and sslkey do not match: {err}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("sslcert and sslkey must be given together".to_owned()),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(RootCert::File(path)) => {
                for cert in read_certs(path, "sslrootcert")? {
                    roots
                        .add(cert)
                        .map_err(|err| format!("sslrootcert {}: {err}", path.display()))?;
                }
            }
            Some(RootCert::System) => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(
                        "sslrootcert=system: no trusted root certificate on this system".into(),
                    );
                }
            }
            None => {
                return Err(format!(
                    "sslmode={} verifies the server's certificate: give sslrootcert=PATH to its CA, \
                     or sslrootcert=system",
                    self.mode
                ));
            }
        }
        Ok(roots)
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("{what} {}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client key, refused when group or others may read it, as libpq does
/// (0600 or less; 0640 or less when root owns it).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|err| format!("sslkey {shown}: {err}"))?;
    let allowed = if metadata.uid() == 0 { 0o640 } else { 0o600 };
    if metadata.mode() & 0o777 & !allowed != 0 {
        return Err(format!(
            "sslkey {shown} has group or world access ({:04o}); it must be {allowed:04o} or less",
            metadata.mode() & 0o777
        ));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|err| format!("sslkey {shown}: {err}"))
}

/// The verifier for every mode but `verify-full`: with `chain`, the chain
/// must lead to a trusted root but the host name is not checked
/// (`verify-ca`, `require` with roots); without, any certificate is taken
/// (`prefer`, `allow`, `require`: encrypted, not verified, as libpq). The
/// handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a TLS failure means for an operator, when `err` (a driver error
/// chain) holds one; `None` otherwise.
pub(crate) fn explain(err: &(dyn std::error::Error + 'static), mode: SslMode) -> Option<String> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(rustls::Error::InvalidCertificate(reason)) =
            current.downcast_ref::<rustls::Error>()
        {
            let why = match reason {
                CertificateError::UnknownIssuer => {
                    "it is not signed by a trusted root (check sslrootcert)".to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "it is not valid for this host name (verify-ca checks the chain only)"
                        .to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "it has expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "it is not valid yet".to_owned()
                }
                CertificateError::Revoked => "it was revoked".to_owned(),
                other => format!("{other:?}"),
            };
            return Some(format!(
                "the server's certificate does not verify under sslmode={mode}: {why}"
            ));
        }
        if let Some(io) = current.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = explain(inner, mode)
        {
            return Some(found);
        }
        if current.to_string().contains("server does not support TLS") {
            return Some(format!(
                "the server does not support TLS, which sslmode={mode} requires"
            ));
        }
        cause = current.source();
    }
    None
}
