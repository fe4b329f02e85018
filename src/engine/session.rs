//! A BuildKit session on the engine, opened as the Docker CLI opens one: `POST /session` upgraded to a raw connection on which the engine, as a gRPC client, calls what the session serves (health checks, and FileSync for the build context).

use std::pin::Pin;
use std::task::{Context, Poll};

use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::EngineError;
use crate::context::FileSyncService;

/// The gRPC methods the session offers, announced when it is opened.
const METHODS: [&str; 2] = ["/grpc.health.v1.Health/Check", "/moby.filesync.v1.FileSync/DiffCopy"];

/// How long the engine may take to accept the session.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An open session; the engine loses it when this is dropped.
#[derive(Debug)]
pub(crate) struct Session {
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where the engine listens, as `DOCKER_HOST` gives it.
enum Address {
    Unix(std::path::PathBuf),
    Tcp(String),
}

fn address(host: &str) -> Option<Address> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Some(Address::Unix(path.into()));
    }
    let rest = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://"))?;
    Some(Address::Tcp(rest.trim_end_matches('/').to_string()))
}

/// Opens session `id` (named `name`, sharing the engine's earlier syncs under
/// `shared_key`) on the engine at `host` (a `unix://` or `tcp://` URL), speaking
/// API `api`, and serves `files` on it until the session is dropped.
pub(crate) async fn open(host: &str, api: &str, id: &str, name: &str, shared_key: &str, files: FileSyncService) -> Result<Session, EngineError> {
    let failed = |detail: String| EngineError::Session {
        host: host.to_string(),
        detail,
    };
    let opened = async {
        let io: Box<dyn Io> = match address(host).ok_or_else(|| failed("layerbench opens sessions on unix:// and tcp:// engines only".into()))? {
            Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(&path).await.map_err(|e| failed(format!("connect to {}: {e}", path.display())))?),
            Address::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(&addr).await.map_err(|e| failed(format!("connect to {addr}: {e}")))?),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| failed(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        let mut request = hyper::Request::post(format!("/v{api}/session"))
            .header(hyper::header::HOST, "docker")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "h2c")
            .header("X-Docker-Expose-Session-Uuid", id)
            .header("X-Docker-Expose-Session-Name", name)
            .header("X-Docker-Expose-Session-Sharedkey", shared_key);
        for method in METHODS {
            request = request.header("X-Docker-Expose-Session-Grpc-Method", method);
        }
        let request = request.body(Empty::new()).map_err(|e| failed(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| failed(format!("POST /session: {e}")))?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(failed(format!("POST /session answered {status}: {}", String::from_utf8_lossy(&body).trim())));
        }
        hyper::upgrade::on(response).await.map_err(|e| failed(format!("upgrade: {e}")))
    };
    let upgraded = tokio::time::timeout(OPEN_TIMEOUT, opened)
        .await
        .map_err(|_| failed(format!("the engine did not accept the session within {} s", OPEN_TIMEOUT.as_secs())))??;
    let router = tonic::transport::Server::builder()
        .add_service(HealthServer::new(Healthy))
        .add_service(FileSyncServer::new(files));
    let connection = Upgraded(TokioIo::new(upgraded));
    let server = tokio::spawn(async move {
        let _ = router.serve_with_incoming(futures_util::stream::iter([Ok::<_, std::io::Error>(connection)])).await;
    });
    Ok(Session { server })
}

/// A connection to the engine, whatever its transport.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The upgraded connection, on which layerbench is the gRPC server.
struct Upgraded(TokioIo<hyper::upgrade::Upgraded>);

impl tonic::transport::server::Connected for Upgraded {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Upgraded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The health service the engine checks the session with: always serving.
struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn check(&self, _request: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(&self, _request: tonic::Request<HealthListRequest>) -> Result<tonic::Response<HealthListResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthListResponse::default()))
    }

    async fn watch(&self, _request: tonic::Request<HealthCheckRequest>) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("the session's health is checked, not watched"))
    }
}
