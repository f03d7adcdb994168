//! The default HTTP client: hyper-util's pooled client over rustls (feature `rustls`).

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// hyper-util's client with rustls, sending the stack's read request bodies: a
/// `Service<http::Request<RequestBody>>` whose responses stream `hyper::body::Incoming`.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, ballast_classify::RequestBody>;

/// A pooled HTTP/1.1 and HTTP/2 client that trusts the system's root certificates, speaks
/// TLS through rustls (ring), and also takes plain `http://` URLs (a local proxy or the
/// simulated provider on loopback).
///
/// Fails only when the system's certificate store cannot be read at all.
pub fn https_client() -> std::io::Result<HttpsClient> {
    let connector = HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}
