//! [`SimServer`]: the simulated provider on a loopback HTTP port.

use std::io;
use std::net::SocketAddr;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::simulator::MAX_REQUEST_BODY;
use crate::{SimBody, Simulator};

/// The simulator served over HTTP/1.1 on `127.0.0.1` at a free port.
///
/// Dropping the server stops it and closes every connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use ballast_sim::{Scenario, SimServer, Simulator};
///
/// let server = SimServer::start(Simulator::new(Scenario::healthy())).await?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    simulator: Simulator,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Binds `127.0.0.1:0` and serves `simulator` until dropped.
    pub async fn start(simulator: Simulator) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let sim = simulator.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set, so aborting this task closes them all.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let sim = sim.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |request: http::Request<Incoming>| {
                                let sim = sim.clone();
                                async move {
                                    let (parts, body) = request.into_parts();
                                    let limited = Limited::new(body, MAX_REQUEST_BODY);
                                    let response = match limited.collect().await {
                                        Ok(body) => {
                                            let body = body.to_bytes();
                                            sim.respond_events(http::Request::from_parts(parts, body)).await
                                        }
                                        // Too large, or cut off: no provider answers that.
                                        Err(_) => too_large().map(SimBody::from),
                                    };
                                    Ok::<_, Infallible>(response)
                                }
                            });
                            // A client hanging up mid-request is normal here (timeouts).
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(Self {
            addr,
            simulator,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulator behind the server (its ledger, its clock).
    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }
}

fn too_large() -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(
        b"request body too large or incomplete",
    )));
    *response.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
    response
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
