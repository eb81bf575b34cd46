//! The rustls configuration handed to reqwest: ring as the crypto provider (chosen here, so no
//! process-wide default has to be installed), the platform's trust store plus the operator's extra
//! CAs, an optional client certificate for mutual TLS, and ALPN offering HTTP/2 then HTTP/1.1.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ClientIdentity;

/// ALPN: HTTP/2 where the receiver offers it, HTTP/1.1 otherwise.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The TLS client configuration for deliveries. `extra_roots` are DER certificates trusted on top
/// of the platform's store; `identity` is presented when a receiver asks for a client certificate.
pub(crate) fn client_config(
    extra_roots: &[Vec<u8>],
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = extra_roots.iter().map(|der| CertificateDer::from(der.clone()).into_owned());
    let versions = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone()) {
        Ok(verifier) => versions.dangerous().with_custom_certificate_verifier(Arc::new(verifier)),
        Err(e) => {
            tracing::error!(error = %e, "no platform trust store; https deliveries will fail verification");
            versions.with_root_certificates(rustls::RootCertStore::empty())
        }
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let (chain, key) = parse_identity(id.pem())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("WEBHOOKS_CLIENT_CERT_FILE: the certificate and key do not fit together: {e}"))?
        }
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The certificate chain (leaf first) and private key in a PEM text.
fn parse_identity(pem: &[u8]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("WEBHOOKS_CLIENT_CERT_FILE: invalid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("WEBHOOKS_CLIENT_CERT_FILE: no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("WEBHOOKS_CLIENT_CERT_FILE / WEBHOOKS_CLIENT_KEY_FILE: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
    })?;
    Ok((chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_need_a_certificate_and_its_key() {
        let a = rcgen::generate_simple_self_signed(vec!["client.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.test".to_string()]).unwrap();
        let pem = |cert: &rcgen::Certificate, key: &rcgen::KeyPair| {
            ClientIdentity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()))
        };
        let config = client_config(&[], Some(&pem(&a.cert, &a.signing_key))).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let mismatched = client_config(&[], Some(&pem(&a.cert, &b.signing_key))).unwrap_err();
        assert!(mismatched.contains("do not fit"), "{mismatched}");
        let no_key = client_config(&[], Some(&ClientIdentity::from_pem(a.cert.pem()))).unwrap_err();
        assert!(no_key.contains("private key"), "{no_key}");
        let no_cert = client_config(&[], Some(&ClientIdentity::from_pem(a.signing_key.serialize_pem()))).unwrap_err();
        assert!(no_cert.contains("no CERTIFICATE"), "{no_cert}");
        assert!(!client_config(&[], None).unwrap().client_auth_cert_resolver.has_certs());
    }
}
