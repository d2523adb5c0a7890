//! `run --metrics`: serves `/metrics` over HTTP/1, or HTTPS and with basic authentication as
//! `--web-config` says. Each scrape asks the run loop for a fresh snapshot, so the counters are
//! read from the maps at scrape time; the page is encoded here, off the loop's thread, gzipped
//! when the scraper accepts it.

use std::{
    convert::Infallible,
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::anyhow;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{
        ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue,
        VARY, WWW_AUTHENTICATE,
    },
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use probe_user::{
    output::{
        metrics::{self, Detail, Encoding, Format, Tally},
        web_config::{Credentials, WebConfig, WebConfigWatch},
    },
    session::Snapshot,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

/// `--metrics` without an address. Loopback only: the page names the host's interfaces and says
/// which of them expose loopback services.
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";
/// How long a connection may take to send its request headers, or sit idle between requests.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection may stay open at all: a scrape takes milliseconds, and a scraper that
/// keeps its connection alive opens a new one.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// How long a client may take over the TLS handshake: milliseconds for a scraper.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection waits for the web configuration to be looked at (a few `stat` calls,
/// or a reload); past that it is served with the last good one.
const RELOAD_WAIT: Duration = Duration::from_secs(2);
/// Connections served at once, at most; more are closed as soon as they are accepted, so idle
/// or slow clients can never take the descriptors an interface needs to be attached.
const MAX_CONNECTIONS: usize = 64;
/// Connections one source (an IPv4 address, an IPv6 /64) may hold at once: a scraper needs one
/// or two, and a neighbour holding idle connections open must leave room for the others.
const MAX_PER_SOURCE: usize = 8;

/// The connections each source holds.
#[derive(Default)]
struct Sources(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

impl Sources {
    /// Counts a connection from `peer` until the guard is dropped; `None` when its source
    /// holds [`MAX_PER_SOURCE`] already.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<SourceGuard> {
        let source = match peer.to_canonical() {
            IpAddr::V6(address) => IpAddr::V6(Ipv6Addr::from_bits(
                address.to_bits() & !u128::from(u64::MAX),
            )),
            v4 => v4,
        };
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(source).or_default();
        if *count >= MAX_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(SourceGuard {
            sources: Arc::clone(self),
            source,
        })
    }
}

/// One connection counted against its source.
struct SourceGuard {
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut held = self
            .sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.source);
            }
        }
    }
}

/// [`MAX_CONNECTIONS`], or a quarter of the open files allowed when that is fewer: the rest
/// stays for the maps, links and sockets of the interfaces.
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes during the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return MAX_CONNECTIONS;
    }
    usize::try_from(limit.rlim_cur / 4).map_or(MAX_CONNECTIONS, |room| room.min(MAX_CONNECTIONS))
}

/// What the run loop answers a scrape with: a fresh snapshot, and what it counted across all.
pub(crate) struct Scraped {
    pub(crate) snapshot: Snapshot,
    pub(crate) tally: Tally,
}

/// A scrape waiting for the run loop's snapshot.
pub(crate) type SnapshotRequest = oneshot::Sender<Scraped>;

/// Listens on `address`; called before anything is attached, so an address that cannot be used
/// ends the run before it starts.
pub(crate) async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        if error.kind() == io::ErrorKind::AddrInUse {
            anyhow!(
                "cannot serve metrics on {address}, which another program is using; give a free \
                 address with --metrics IP:PORT"
            )
        } else {
            anyhow!(
                "cannot serve metrics on {address} ({error}); give an address of this host with \
                 --metrics IP:PORT"
            )
        }
    })
}

/// Serves `listener` until the task is aborted; every scrape sends a request on `snapshots` and
/// gets a page at `detail`; `web`, if given, says how connections are served.
pub(crate) fn spawn(
    listener: TcpListener,
    snapshots: mpsc::Sender<SnapshotRequest>,
    detail: Detail,
    web: Option<Arc<WebConfigWatch>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let cap = connection_cap();
        let room = Arc::new(Semaphore::new(cap));
        let sources = Arc::new(Sources::default());
        // Said once each: a client opening connection after connection would fill the logs.
        let mut said_full = false;
        let mut said_source_full = false;
        // The size of the last page encoded, for the next.
        let last_page = Arc::new(AtomicUsize::new(0));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to be closed.
                    tracing::warn!("cannot accept a metrics connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(source) = sources.admit(peer.ip()) else {
                if !said_source_full {
                    tracing::warn!(
                        "{} holds {MAX_PER_SOURCE} metrics connections open; closing more from \
                         it at once",
                        peer.ip()
                    );
                    said_source_full = true;
                }
                drop(stream);
                continue;
            };
            let Ok(permit) = Arc::clone(&room).try_acquire_owned() else {
                if !said_full {
                    tracing::warn!("{cap} metrics connections are open; closing more at once");
                    said_full = true;
                }
                drop(stream);
                continue;
            };
            let page = Page {
                snapshots: snapshots.clone(),
                detail,
                last_page: Arc::clone(&last_page),
            };
            let web = web.clone();
            // A connection of its own: a scraper that goes away mid-response ends only that.
            tokio::spawn(async move {
                let connection = async {
                    let config = match web {
                        Some(watch) => Some(web_config(watch).await),
                        None => None,
                    };
                    match config.as_ref().and_then(|config| config.tls()) {
                        Some(tls) => {
                            let handshake = TlsAcceptor::from(Arc::clone(tls)).accept(stream);
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                                Ok(Ok(stream)) => serve(stream, page, config).await,
                                // Plain HTTP, a client certificate missing or not trusted, or
                                // a client that does not trust ours: debug, as anyone can
                                // connect.
                                Ok(Err(error)) => {
                                    tracing::debug!("metrics TLS handshake failed: {error}");
                                }
                                Err(_) => tracing::debug!("metrics TLS handshake timed out"),
                            }
                        }
                        None => serve(stream, page, config).await,
                    }
                };
                if tokio::time::timeout(CONNECTION_LIFETIME, connection)
                    .await
                    .is_err()
                {
                    tracing::debug!("metrics connection closed after its lifetime");
                }
                drop(permit);
                drop(source);
            });
        }
    })
}

/// What a scrape needs to make the page.
#[derive(Clone)]
struct Page {
    snapshots: mpsc::Sender<SnapshotRequest>,
    detail: Detail,
    last_page: Arc<AtomicUsize>,
}

/// The web configuration to serve a new connection with, looked at on a blocking thread: the
/// loop's thread never waits for a file.
async fn web_config(watch: Arc<WebConfigWatch>) -> Arc<WebConfig> {
    let looked_at = tokio::task::spawn_blocking({
        let watch = Arc::clone(&watch);
        move || watch.current()
    });
    match tokio::time::timeout(RELOAD_WAIT, looked_at).await {
        Ok(Ok(config)) => config,
        _ => watch.last_good(),
    }
}

async fn serve<S>(stream: S, page: Page, config: Option<Arc<WebConfig>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let page = page.clone();
        let config = config.clone();
        async move {
            let mut response = match refused(&request, config.as_ref()).await {
                Some(refusal) => refusal,
                None => respond(request, page).await,
            };
            if let Some(config) = &config {
                for (name, value) in config.headers() {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!("metrics connection ended: {error}");
    }
}

/// The response to a request without the credentials `config` asks for: 401, as the Go
/// toolkit answers. A bcrypt not cached is computed on a blocking thread.
async fn refused(
    request: &Request<Incoming>,
    config: Option<&Arc<WebConfig>>,
) -> Option<Response<Full<Bytes>>> {
    let config = config.filter(|config| config.basic_auth().is_some())?;
    let credentials = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| Credentials::from_header(value.as_bytes()));
    let allowed = match credentials {
        None => false,
        Some(credentials) => match config.basic_auth()?.cached(&credentials) {
            Some(known) => known,
            None => {
                let config = Arc::clone(config);
                tokio::task::spawn_blocking(move || {
                    config
                        .basic_auth()
                        .is_some_and(|auth| auth.verify(&credentials))
                })
                .await
                .unwrap_or(false)
            }
        },
    };
    if allowed {
        return None;
    }
    let mut response = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    Some(response)
}

async fn respond(request: Request<Incoming>, page: Page) -> Response<Full<Bytes>> {
    let Page {
        snapshots,
        detail,
        last_page,
    } = page;
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; the metrics are at /metrics\n",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|accept| accept.to_str().ok());
    let format = Format::negotiate(accept);
    let encoding = Encoding::negotiate(
        request
            .headers()
            .get(ACCEPT_ENCODING)
            .and_then(|accept| accept.to_str().ok()),
    );
    let (reply, scraped) = oneshot::channel();
    let Ok(()) = snapshots.send(reply).await else {
        return stopping();
    };
    let Ok(Scraped { snapshot, tally }) = scraped.await else {
        return stopping();
    };
    // Thousands of interfaces take milliseconds to encode and compress: not on the loop's
    // thread, which counts, follows interfaces and reports.
    let Ok(body) = tokio::task::spawn_blocking(move || {
        // Sized as the last page and a little more: interfaces come and go between scrapes.
        let hint = last_page.load(Ordering::Relaxed);
        let page = metrics::encode_sized(snapshot, tally, detail, format, hint + hint / 16);
        last_page.store(page.len(), Ordering::Relaxed);
        encoding.apply(page)
    })
    .await
    else {
        return stopping();
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(coding) = encoding.header() {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    response
}

/// The run loop has ended: the probe is detaching.
fn stopping() -> Response<Full<Bytes>> {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "localnet-probe is stopping\n",
    )
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
