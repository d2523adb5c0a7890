//! Pod and container names from the container runtime's CRI socket (containerd, CRI-O), read
//! only: `ListPodSandbox` and `ListContainers` of the kubelet's API (`runtime.v1`), gRPC over
//! HTTP/2 on a Unix socket. One listing answers every workload of a resolution; each socket's
//! exchange has a deadline and its answer is bounded in bytes and in items, so a socket that
//! hangs or answers garbage costs at most that, and a failed one is not asked again for a while.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

use super::{Workload, cgroup::Attribution};

/// The sockets asked when none is given: containerd's and CRI-O's.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["/run/containerd/containerd.sock", "/run/crio/crio.sock"];
/// The longest a listing may take, connecting included.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// How long one who needs the names now (`audit`, a first `status`) waits for a listing: its
/// deadline, and a moment for the thread that makes it to start.
pub const WAIT: Duration = DEADLINE.saturating_add(Duration::from_millis(500));
/// How long after a failed listing the CRI is asked again.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// The most a listing's answer may hold; a node's pods and containers take far less.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most pods, or containers, a listing may hold (a node runs a few hundred pods): a few
/// bytes per item on the wire must not make megabytes of them here.
const MAX_ITEMS: usize = 1 << 16;
/// The longest Kubernetes name (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// The pod and container names the CRI gives a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Names {
    pub pod: Option<String>,
    /// The pod's Kubernetes namespace.
    pub namespace: Option<String>,
    /// The name of the container the processes are in; `None` for the pod's sandbox (its pause
    /// process) or where not known.
    pub container: Option<String>,
}

/// Which CRI sockets to ask: every one that exists, at once; the first in order that answers
/// is the one listened to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints(Vec<PathBuf>);

impl Default for Endpoints {
    fn default() -> Self {
        Self(DEFAULT_ENDPOINTS.iter().map(PathBuf::from).collect())
    }
}

impl Endpoints {
    /// The sockets given (`unix://` prefixes taken off, as crictl writes them); none: the
    /// defaults.
    pub fn given(paths: &[String]) -> Self {
        if paths.is_empty() {
            return Self::default();
        }
        Self(
            paths
                .iter()
                .map(|path| PathBuf::from(path.strip_prefix("unix://").unwrap_or(path)))
                .collect(),
        )
    }

    /// The sockets to ask: those that exist.
    fn present(&self) -> Vec<&Path> {
        self.0
            .iter()
            .map(PathBuf::as_path)
            .filter(|path| path.metadata().is_ok())
            .collect()
    }

    fn listed(&self) -> String {
        self.0
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Asks the CRI for the names of workloads. The listing is made on a thread of its own and
/// kept: a caller waits for it at most as long as it says, and a pod the listing lacks has it
/// made again at most every [`RELIST_EVERY`]. Clones share the listing.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    endpoints: Endpoints,
    state: Mutex<State>,
    listed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The latest listing, or why there is none, and when it was asked for.
    latest: Option<(Instant, Result<Arc<Listing>, String>)>,
    listing: bool,
}

/// How often a listing that lacks a pod or container asked about is made again.
const RELIST_EVERY: Duration = Duration::from_secs(5);

impl Client {
    pub fn new(endpoints: Endpoints) -> Self {
        Self {
            shared: Arc::new(Shared {
                endpoints,
                state: Mutex::new(State::default()),
                listed: Condvar::new(),
            }),
        }
    }

    /// Names the pods and containers of `workloads`, those with a pod UID; where the CRI
    /// cannot say, `names_unresolved` says why. Waits at most `wait` for a listing under way.
    pub fn name<'a>(&self, workloads: impl IntoIterator<Item = &'a mut Workload>, wait: Duration) {
        let wanted: Vec<&mut Workload> = workloads
            .into_iter()
            .filter(|workload| workload.attribution.pod_uid.is_some())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let latest = self.latest(&wanted, wait);
        for workload in wanted {
            let named = match &latest {
                Some(Ok(listing)) => listing.names_of(&workload.attribution),
                Some(Err(why)) => Err(why.clone()),
                None => Err("pod names not known yet: the CRI is being asked".to_owned()),
            };
            match named {
                Ok(Named { names, missing }) => {
                    workload.names = names;
                    workload.names_unresolved = missing;
                }
                Err(why) => workload.names_unresolved = Some(why),
            }
        }
    }

    /// Whether a listing is under way.
    pub fn listing(&self) -> bool {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .listing
    }

    /// The listing to name `wanted` from, asked for anew when due.
    fn latest(
        &self,
        wanted: &[&mut Workload],
        wait: Duration,
    ) -> Option<Result<Arc<Listing>, String>> {
        let shared = &self.shared;
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = match &state.latest {
            None => true,
            Some((at, Err(_))) => at.elapsed() >= REST_AFTER_FAILURE,
            Some((at, Ok(listing))) => {
                at.elapsed() >= RELIST_EVERY
                    && wanted.iter().any(|workload| {
                        !listing
                            .names_of(&workload.attribution)
                            .is_ok_and(|named| named.missing.is_none())
                    })
            }
        };
        if due && !state.listing {
            state.listing = true;
            let for_thread = Arc::clone(shared);
            let spawned = thread::Builder::new()
                .name("cri-listing".to_owned())
                .spawn(move || {
                    let listed = for_thread.endpoints.list();
                    let mut state = for_thread
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    state.latest = Some((Instant::now(), listed.map(Arc::new)));
                    state.listing = false;
                    for_thread.listed.notify_all();
                });
            if let Err(error) = spawned {
                state.listing = false;
                state.latest = Some((
                    Instant::now(),
                    Err(format!(
                        "pod names not known: cannot start a thread to ask the CRI: {error}"
                    )),
                ));
            }
        }
        let (state, _) = shared
            .listed
            .wait_timeout_while(state, wait, |state| state.listing)
            .unwrap_or_else(PoisonError::into_inner);
        state.latest.as_ref().map(|(_, latest)| latest.clone())
    }
}

impl Endpoints {
    /// The pods and containers the first socket in order lists of those present, all asked at
    /// once, or why none does, as said to users.
    fn list(&self) -> Result<Listing, String> {
        let present = self.present();
        if present.is_empty() {
            return Err(format!(
                "pod names not known: no CRI socket ({})",
                self.listed()
            ));
        }
        let mut failures = Vec::new();
        for (socket, listed) in present.iter().zip(list(&present)) {
            match listed {
                Ok(listing) => return Ok(listing),
                Err(error) => failures.push(format!("the CRI at {}: {error}", socket.display())),
            }
        }
        Err(format!("pod names not known: {}", failures.join("; ")))
    }
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("did not answer within {} s", DEADLINE.as_secs())]
    Deadline,
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no HTTP/2 gRPC server: {0}")]
    Http(#[from] hyper::Error),
    #[error("answered HTTP status {0}")]
    Status(u16),
    #[error("answered gRPC status {code}{}", message.as_deref().map_or(String::new(), |m| format!(": {m}")))]
    Grpc { code: u32, message: Option<String> },
    #[error("answered more than {} MiB", MAX_ANSWER_BYTES >> 20)]
    TooLarge,
    #[error("listed more than {MAX_ITEMS} {0}")]
    TooMany(&'static str),
    #[error("is not a socket")]
    NotSocket,
    #[error("answered what is no {0}: {1}")]
    Malformed(&'static str, String),
    #[error("cannot start a runtime for the request: {0}")]
    Runtime(io::Error),
}

/// The pods and containers the CRI lists.
#[derive(Debug, Default)]
struct Listing {
    sandboxes: Vec<PodSandbox>,
    /// By id; several where a runtime lists one id twice (in different pods, at worst).
    containers: HashMap<String, Vec<Container>>,
}

/// The names found for a workload, and what of them is missing.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    names: Names,
    missing: Option<String>,
}

impl Listing {
    fn new(sandboxes: Vec<PodSandbox>, containers: Vec<Container>) -> Self {
        let mut by_id: HashMap<String, Vec<Container>> = HashMap::new();
        for container in containers {
            by_id
                .entry(container.id.clone())
                .or_default()
                .push(container);
        }
        Self {
            sandboxes,
            containers: by_id,
        }
    }

    /// The names for a workload of pod `attribution.pod_uid`: its sandbox's (the ready one if
    /// several attempts are listed, else the latest) and its container's, if listed in that
    /// pod; or why the pod has none.
    fn names_of(&self, attribution: &Attribution) -> Result<Named, String> {
        let no_pod = || "the CRI lists no pod with this UID".to_owned();
        let uid = attribution.pod_uid.as_deref().ok_or_else(no_pod)?;
        let (sandbox, metadata) = self
            .sandboxes
            .iter()
            .filter_map(|sandbox| Some((sandbox, sandbox.metadata.as_ref()?)))
            .filter(|(_, metadata)| metadata.uid == uid)
            .max_by_key(|(sandbox, _)| (sandbox.state == SANDBOX_READY, sandbox.created_at))
            .ok_or_else(no_pod)?;
        let mut missing = Vec::new();
        let mut name = |name: &str, what: &str| {
            let valid = kubernetes_name(name);
            if valid.is_none() {
                missing.push(format!("the CRI gave a {what} that is no Kubernetes name"));
            }
            valid
        };
        let pod = name(&metadata.name, "pod name");
        let namespace = name(&metadata.namespace, "namespace");
        let container = match attribution.container_id.as_deref() {
            // The sandbox's own process (its pause): a pod, and no container of it.
            None => None,
            Some(id) if id == sandbox.id => None,
            Some(id) => {
                let listed = self
                    .containers
                    .get(id)
                    .into_iter()
                    .flatten()
                    .find(|container| container.pod_sandbox_id == sandbox.id);
                match listed.and_then(|container| container.metadata.as_ref()) {
                    Some(metadata) => name(&metadata.name, "container name"),
                    None => {
                        missing.push(format!(
                            "the CRI lists no container {} in this pod",
                            &id[..12.min(id.len())]
                        ));
                        None
                    }
                }
            }
        };
        Ok(Named {
            names: Names {
                pod,
                namespace,
                container,
            },
            missing: (!missing.is_empty()).then(|| missing.join("; ")),
        })
    }
}

/// `name` if it is a Kubernetes object name (a DNS subdomain: lowercase letters, digits, `-`
/// and `.`, at most 253 bytes), which a runtime answering honestly gives; anything else is not
/// shown.
fn kubernetes_name(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-.".contains(&byte)
        });
    valid.then(|| name.to_owned())
}

/// Lists the pods and containers at each of `sockets`, all at once, each within [`DEADLINE`].
fn list(sockets: &[&Path]) -> Vec<Result<Listing, CriError>> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = || CriError::Runtime(io::Error::new(error.kind(), error.to_string()));
            return sockets.iter().map(|_| Err(error())).collect();
        }
    };
    runtime.block_on(async {
        let asked: Vec<_> = sockets
            .iter()
            .map(|socket| {
                let socket = socket.to_path_buf();
                tokio::spawn(async move {
                    tokio::time::timeout(DEADLINE, list_one(&socket))
                        .await
                        .unwrap_or(Err(CriError::Deadline))
                })
            })
            .collect();
        let mut listed = Vec::with_capacity(asked.len());
        for answer in asked {
            listed.push(answer.await.unwrap_or_else(|error| {
                Err(CriError::Runtime(io::Error::other(error.to_string())))
            }));
        }
        listed
    })
}

async fn list_one(socket: &Path) -> Result<Listing, CriError> {
    let is_socket = std::os::unix::fs::FileTypeExt::is_socket(
        &socket.metadata().map_err(CriError::Connect)?.file_type(),
    );
    if !is_socket {
        return Err(CriError::NotSocket);
    }
    let mut connection = Connection::open(socket).await?;
    let sandboxes = items(
        connection
            .call_raw("ListPodSandbox", &ListPodSandboxRequest {})
            .await?,
        "pods",
    )?;
    let containers = items(
        connection
            .call_raw("ListContainers", &ListContainersRequest {})
            .await?,
        "containers",
    )?;
    Ok(Listing::new(sandboxes, containers))
}

/// The items of a listing's answer (its field 1, repeated), decoded one by one: at most
/// [`MAX_ITEMS`], and one that cannot be decoded (a name that is no UTF-8) left out rather
/// than failing the others.
fn items<Item: prost::Message + Default>(
    mut answer: Bytes,
    what: &'static str,
) -> Result<Vec<Item>, CriError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let malformed =
        |error: prost::DecodeError| CriError::Malformed("CRI listing", error.to_string());
    let mut found = Vec::new();
    while answer.has_remaining() {
        let (tag, wire_type) = decode_key(&mut answer).map_err(malformed)?;
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut answer).map_err(malformed)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut answer).map_err(malformed)?)
                    .unwrap_or(usize::MAX);
                if len > answer.remaining() {
                    return Err(CriError::Malformed("CRI listing", "cut short".to_owned()));
                }
                if tag == 1 {
                    if found.len() == MAX_ITEMS {
                        return Err(CriError::TooMany(what));
                    }
                    if let Ok(item) = Item::decode(answer.split_to(len)) {
                        found.push(item);
                    }
                    0
                } else {
                    len
                }
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(CriError::Malformed("CRI listing", "a group".to_owned()));
            }
        };
        if skip > answer.remaining() {
            return Err(CriError::Malformed("CRI listing", "cut short".to_owned()));
        }
        answer.advance(skip);
    }
    Ok(found)
}

/// An HTTP/2 connection to a CRI socket, for unary calls of `runtime.v1.RuntimeService`.
pub struct Connection {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

impl Connection {
    /// Connects, on the current tokio runtime, which drives the connection.
    pub async fn open(socket: &Path) -> Result<Self, CriError> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(CriError::Connect)?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        Ok(Self {
            sender,
            driver: tokio::spawn(connection),
        })
    }

    /// Calls `method` with `request`, and decodes its answer.
    pub async fn call<Answer: prost::Message + Default>(
        &mut self,
        method: &str,
        request: &impl prost::Message,
    ) -> Result<Answer, CriError> {
        Answer::decode(self.call_raw(method, request).await?)
            .map_err(|error| CriError::Malformed("CRI message", error.to_string()))
    }

    /// Calls `method` with `request`: the answer's message, not decoded.
    async fn call_raw(
        &mut self,
        method: &str,
        request: &impl prost::Message,
    ) -> Result<Bytes, CriError> {
        let request = hyper::Request::post(format!(
            "http://localhost/runtime.v1.RuntimeService/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(request)))
        .map_err(|error| CriError::Malformed("request", error.to_string()))?;
        let response = self.sender.send_request(request).await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(CriError::Status(response.status().as_u16()));
        }
        // A trailers-only answer (an error) has its status in the headers.
        grpc_status(response.headers())?;
        let collected = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => CriError::Http(*error),
                Err(_) => CriError::TooLarge,
            })?;
        if let Some(trailers) = collected.trailers() {
            grpc_status(trailers)?;
        }
        grpc_message(collected.to_bytes())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A gRPC message on the wire: not compressed, its length, itself.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + len);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(len).expect("a request of a few bytes"));
    message
        .encode(&mut frame)
        .expect("room reserved for the message");
    frame.freeze()
}

/// The one message of a unary answer's body.
fn grpc_message(mut body: Bytes) -> Result<Bytes, CriError> {
    let malformed = |why: &str| CriError::Malformed("gRPC message", why.to_owned());
    if body.len() < 5 {
        return Err(malformed("shorter than its 5-byte prefix"));
    }
    if body.get_u8() != 0 {
        return Err(malformed("compressed, which was not asked for"));
    }
    let len = body.get_u32() as usize;
    if len != body.len() {
        return Err(malformed("its length is not the body's"));
    }
    Ok(body)
}

/// An error for a `grpc-status` other than 0, where there is one.
fn grpc_status(headers: &hyper::HeaderMap) -> Result<(), CriError> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    match status.to_str().ok().and_then(|s| s.parse::<u32>().ok()) {
        Some(0) => Ok(()),
        Some(code) => Err(CriError::Grpc {
            code,
            message: headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .map(|m| m.chars().take(200).collect()),
        }),
        None => Err(CriError::Malformed("gRPC status", format!("{status:?}"))),
    }
}

// The messages of k8s.io/cri-api's api.proto (runtime.v1) that are read, with their tags; the
// fields not declared are skipped by the decoder. The listings' answers are read item by item
// ([`items`]): `ListPodSandboxResponse.items` and `ListContainersResponse.containers` are both
// field 1.

/// `PodSandboxState.SANDBOX_READY`.
const SANDBOX_READY: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
struct ListPodSandboxRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct PodSandbox {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    state: i32,
    #[prost(int64, tag = "4")]
    created_at: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    uid: String,
    #[prost(string, tag = "3")]
    namespace: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListContainersRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct Container {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    pod_sandbox_id: String,
    #[prost(message, optional, tag = "3")]
    metadata: Option<ContainerMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContainerMetadata {
    #[prost(string, tag = "1")]
    name: String,
}

#[cfg(test)]
mod tests {
    use std::{io::Read as _, os::unix::net::UnixListener};

    use prost::Message as _;

    use super::*;
    use crate::net::workload::cgroup::Qos;

    const UID: &str = "0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a";

    fn sandbox(id: &str, name: &str, uid: &str, state: i32, created_at: i64) -> PodSandbox {
        PodSandbox {
            id: id.to_owned(),
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.to_owned(),
                namespace: "shop".to_owned(),
            }),
            state,
            created_at,
        }
    }

    fn container(id: &str, sandbox: &str, name: &str) -> Container {
        Container {
            id: id.to_owned(),
            pod_sandbox_id: sandbox.to_owned(),
            metadata: Some(ContainerMetadata {
                name: name.to_owned(),
            }),
        }
    }

    fn in_pod(container_id: &str) -> Attribution {
        Attribution {
            runtime: None,
            container_id: Some(container_id.to_owned()),
            pod_uid: Some(UID.to_owned()),
            qos: Some(Qos::Burstable),
        }
    }

    /// A `PodSandbox` as a runtime sends it: with the fields not declared here (labels,
    /// annotations, the runtime handler), which the decoder skips.
    #[test]
    fn a_listing_is_read_past_the_fields_it_does_not_declare() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct FullSandbox {
            #[prost(string, tag = "1")]
            id: String,
            #[prost(message, optional, tag = "2")]
            metadata: Option<PodSandboxMetadata>,
            #[prost(int32, tag = "3")]
            state: i32,
            #[prost(int64, tag = "4")]
            created_at: i64,
            #[prost(map = "string, string", tag = "5")]
            labels: std::collections::HashMap<String, String>,
            #[prost(string, tag = "7")]
            runtime_handler: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct FullListing {
            #[prost(message, repeated, tag = "1")]
            items: Vec<FullSandbox>,
        }
        let sent = FullListing {
            items: vec![FullSandbox {
                id: "a1".to_owned(),
                metadata: Some(PodSandboxMetadata {
                    name: "web-0".to_owned(),
                    uid: UID.to_owned(),
                    namespace: "shop".to_owned(),
                }),
                state: SANDBOX_READY,
                created_at: 7,
                labels: [("app".to_owned(), "web".to_owned())].into(),
                runtime_handler: "runc".to_owned(),
            }],
        };
        let frame = grpc_frame(&sent);
        let read: Vec<PodSandbox> =
            items(grpc_message(frame).expect("one message"), "pods").expect("decoded");
        assert_eq!(read, vec![sandbox("a1", "web-0", UID, SANDBOX_READY, 7)]);
    }

    /// Items of a few bytes each are counted before they are made, and one that is no valid
    /// message (a name that is no UTF-8) is left out, not the listing.
    #[test]
    fn a_listing_is_bounded_in_items_and_survives_a_bad_one() {
        let empty_items = Bytes::from([0x0a, 0x00].repeat(MAX_ITEMS + 1));
        let error = items::<PodSandbox>(empty_items, "pods").expect_err("too many");
        assert_eq!(
            error.to_string(),
            format!("listed more than {MAX_ITEMS} pods")
        );
        let good = sandbox("a1", "web-0", UID, SANDBOX_READY, 7).encode_to_vec();
        let mut answer = Vec::new();
        // An item whose id (field 1, a string) is the byte 0xff, then a good one.
        answer.extend([0x0a, 0x03, 0x0a, 0x01, 0xff]);
        answer.push(0x0a);
        answer.push(u8::try_from(good.len()).expect("a short item"));
        answer.extend(&good);
        let read: Vec<PodSandbox> = items(Bytes::from(answer), "pods").expect("decoded");
        assert_eq!(read, vec![sandbox("a1", "web-0", UID, SANDBOX_READY, 7)]);
        let cut = Bytes::from_static(&[0x0a, 0x05, 0x0a]);
        assert!(items::<PodSandbox>(cut, "pods").is_err());
    }

    #[test]
    fn a_pod_is_named_by_its_ready_sandbox_and_its_container_by_that_sandbox() {
        let listing = Listing::new(
            vec![
                sandbox("old", "web-0-old", UID, 1, 5),
                sandbox("ready", "web-0", UID, SANDBOX_READY, 3),
                sandbox(
                    "other",
                    "db-0",
                    "1b2c3d4e-0000-4000-8000-000000000000",
                    0,
                    9,
                ),
            ],
            vec![
                container("c-app", "ready", "app"),
                container("c-db", "other", "db"),
                // The same id listed again, in another pod: not this pod's container.
                container("c-app", "other", "impostor"),
            ],
        );
        let names = |id: &str| listing.names_of(&in_pod(id));
        let pod = |container: Option<&str>, missing: Option<&str>| {
            Ok(Named {
                names: Names {
                    pod: Some("web-0".to_owned()),
                    namespace: Some("shop".to_owned()),
                    container: container.map(str::to_owned),
                },
                missing: missing.map(str::to_owned),
            })
        };
        assert_eq!(names("c-app"), pod(Some("app"), None));
        // The sandbox's own pause process: the pod, no container.
        assert_eq!(names("ready"), pod(None, None));
        // A container of another pod is not this pod's; one not listed (yet) is said missing,
        // which has the listing made again.
        assert_eq!(
            names("c-db"),
            pod(None, Some("the CRI lists no container c-db in this pod"))
        );
        let without_ready = Listing::new(
            vec![
                sandbox("first", "web-0-a", UID, 1, 1),
                sandbox("latest", "web-0-b", UID, 1, 2),
            ],
            Vec::new(),
        );
        assert_eq!(
            without_ready
                .names_of(&in_pod("latest"))
                .map(|named| named.names.pod),
            Ok(Some("web-0-b".to_owned()))
        );
        assert_eq!(
            Listing::default().names_of(&in_pod("x")),
            Err("the CRI lists no pod with this UID".to_owned())
        );
        // A name that is no Kubernetes name is not shown, and said so.
        let hostile = Listing::new(
            vec![sandbox("s", "Web\u{1b}[31m", UID, SANDBOX_READY, 1)],
            Vec::new(),
        );
        let named = hostile.names_of(&in_pod("s")).expect("the pod");
        assert_eq!(named.names.pod, None);
        assert_eq!(
            named.missing.as_deref(),
            Some("the CRI gave a pod name that is no Kubernetes name")
        );
    }

    #[test]
    fn only_kubernetes_names_are_kept() {
        for name in ["web-0", "a", "kube-system", "x.y-z", &"a".repeat(253)] {
            assert_eq!(kubernetes_name(name).as_deref(), Some(name));
        }
        for name in [
            "",
            "Web",
            "a b",
            "a\u{1b}[31m",
            "a\nb",
            "a/b",
            "é",
            &"a".repeat(254),
        ] {
            assert_eq!(kubernetes_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_one_plain_message_is_refused() {
        for (body, why) in [
            (&b"\0\0\0"[..], "shorter"),
            (b"\x01\0\0\0\x01x", "compressed"),
            (b"\0\0\0\0\x05xy", "length"),
        ] {
            let error = grpc_message(Bytes::copy_from_slice(body)).expect_err("refused");
            assert!(error.to_string().contains(why), "{error}");
        }
    }

    fn workload_in_pod() -> Workload {
        let mut workload = Workload::pending();
        workload.attribution = in_pod("c-app");
        workload
    }

    /// A socket that accepts and never answers, or answers what is no HTTP/2: the names are
    /// said to be unknown, why, within the deadline; and the socket is not asked again at once.
    #[test]
    fn a_socket_that_hangs_or_answers_garbage_costs_at_most_the_deadline() {
        let dir = std::env::temp_dir().join(format!("cri-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the sockets");
        for (name, answer, said) in [
            ("hangs.sock", None, "did not answer within 2 s"),
            (
                "garbage.sock",
                Some(&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..]),
                "no HTTP/2 gRPC server",
            ),
        ] {
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).expect("a socket");
            let server = thread::spawn(move || {
                let (mut stream, _) = listener.accept().expect("a connection");
                if let Some(answer) = answer {
                    std::io::Write::write_all(&mut stream, answer).expect("written");
                }
                // Held open and read until the client goes.
                let _ = stream.read_to_end(&mut Vec::new());
            });
            let client = Client::new(Endpoints::given(&[format!("unix://{}", path.display())]));
            let mut workload = workload_in_pod();
            let started = Instant::now();
            // Waiting as long as `audit` does gets the listing's own account, not "not yet".
            client.name([&mut workload], WAIT);
            let took = started.elapsed();
            assert!(took < WAIT, "{took:?}");
            let why = workload.names_unresolved.expect("said why");
            assert!(why.contains(said), "{why}");
            assert!(why.contains(&path.display().to_string()), "{why}");
            assert_eq!(workload.names, Names::default());
            server.join().expect("the server ended");
            // Not asked again while resting: no one listens now, and the answer is at once.
            let mut again = workload_in_pod();
            let started = Instant::now();
            client.name([&mut again], DEADLINE * 2);
            assert!(started.elapsed() < Duration::from_millis(100));
            assert_eq!(again.names_unresolved.as_deref(), Some(why.as_str()));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every endpoint present is asked; what is no socket is said so, without connecting.
    #[test]
    fn each_endpoint_present_is_asked_and_one_that_is_no_socket_said_so() {
        let dir = std::env::temp_dir().join(format!("cri-test-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let file = dir.join("file");
        std::fs::write(&file, "").expect("a file");
        let client = Client::new(Endpoints::given(&[
            file.display().to_string(),
            "/nonexistent/cri.sock".to_owned(),
            dir.display().to_string(),
        ]));
        let mut workload = workload_in_pod();
        client.name([&mut workload], WAIT);
        assert_eq!(
            workload.names_unresolved,
            Some(format!(
                "pod names not known: the CRI at {}: is not a socket; the CRI at {}: is not a \
                 socket",
                file.display(),
                dir.display()
            ))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_socket_the_names_are_said_unknown_and_no_one_waits() {
        let client = Client::new(Endpoints::given(&["/nonexistent/cri.sock".to_owned()]));
        let mut workload = workload_in_pod();
        client.name([&mut workload], DEADLINE);
        assert_eq!(
            workload.names_unresolved.as_deref(),
            Some("pod names not known: no CRI socket (/nonexistent/cri.sock)")
        );
        // A workload in no pod is not asked about.
        let mut alone = Workload::pending();
        client.name([&mut alone], DEADLINE);
        assert_eq!(alone.names_unresolved, None);
    }
}
