//! A fake Koji 1.35 hub for tests, following notes/koji-protocol.md: XML-RPC over
//! HTTP with Koji's dialect, password login, header sessions with call-number checks
//! (SequenceError/RetryError, the retry whitelist), exclusive sessions and
//! subsessions, session expiry and renewal, the task states and scheduler assignment
//! (`host.getTasks`), open/close/fail/free/refuse, subtasks and waiting, buildroots,
//! raw uploads into a temporary topdir, `checkUpload`, multiCall, ServerOffline, and
//! injected faults and dropped connections. Methods live in a dispatch table
//! ([`FakeHub::register`]) so later task helpers can add theirs.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use koji_adjutant::xmlrpc::{
    decode_args, decode_call, decode_response, encode_call, encode_fault_response, encode_response,
    Fault, MethodResponse, Struct, Value,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub const FREE: i64 = 0;
pub const OPEN: i64 = 1;
pub const CLOSED: i64 = 2;
pub const CANCELED: i64 = 3;
pub const ASSIGNED: i64 = 4;
pub const FAILED: i64 = 5;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn fault(code: i32, msg: impl Into<String>) -> Fault {
    Fault::new(code, msg)
}

/// Methods the 1.35 hub lets a session retry with the same call number.
const RETRY_WHITELIST: &[&str] = &[
    "host.taskWait",
    "host.taskUnwait",
    "host.taskSetWait",
    "host.updateHost",
    "host.setBuildRootState",
    "repoExpire",
    "repoDelete",
    "repoProblem",
];

/// Methods that never write (their call number is not stored, as on the hub, where
/// it is committed only with other changes).
const READ_ONLY: &[&str] = &[
    "echo",
    "getKojiVersion",
    "getSessionInfo",
    "host.getID",
    "host.getHost",
    "host.getHostTasks",
    "getTaskInfo",
    "getTaskResult",
    "taskFinished",
    "listBuildroots",
    "listHosts",
    "getChannel",
    "checkUpload",
    "host.getLoadData",
];

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub arches: String,
    pub capacity: f64,
    pub enabled: bool,
    pub ready: bool,
    pub task_load: f64,
    pub update_ts: Option<f64>,
    pub data: Value,
    pub update_calls: u64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub key: String,
    pub user_id: i64,
    pub master: Option<i64>,
    pub exclusive: bool,
    pub closed: bool,
    pub expired: bool,
    pub callnum: Option<i64>,
    pub start_ts: f64,
    /// every call number seen, in order
    pub seen: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: i64,
    pub method: String,
    pub request: String,
    pub state: i64,
    pub host_id: Option<i64>,
    pub parent: Option<i64>,
    pub label: Option<String>,
    pub arch: String,
    pub priority: i64,
    pub weight: f64,
    pub waiting: bool,
    pub awaited: bool,
    pub owner: i64,
    pub result: Option<String>,
    pub create_ts: f64,
    pub start_ts: Option<f64>,
    pub completion_ts: Option<f64>,
    /// times it was opened
    pub opened: u32,
}

#[derive(Debug, Clone)]
pub struct Buildroot {
    pub id: i64,
    pub host_id: i64,
    pub task_id: Option<i64>,
    pub state: i64,
}

/// What to do to matching calls.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this fault.
    Fault(Fault),
    /// Close the connection without answering, before running the call.
    DropBefore,
    /// Run the call, then close the connection without answering.
    DropAfter,
    /// For raw uploads: write this many bytes of the body, then drop the connection.
    DropUploadAfter(usize),
    /// Answer 200 with a body that is not XML-RPC, without running the call.
    Garbage,
    /// Answer with this HTTP status (and an HTML body), without running the call.
    HttpStatus(u16),
    /// Read the request, then answer nothing for this long (the client times out),
    /// then drop the connection; the call is not run.
    Hang(std::time::Duration),
}

#[derive(Debug, Clone)]
pub struct Injection {
    pub method: String,
    pub remaining: u32,
    pub action: Action,
}

/// One call as the hub saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub method: String,
    pub session: Option<i64>,
    pub callnum: Option<i64>,
    pub params: Vec<Value>,
    pub outcome: Result<(), i32>,
}

/// Per-call context.
pub struct Ctx {
    pub session: Option<i64>,
    pub user_id: Option<i64>,
    pub method: String,
    /// The user named by a verified TLS client certificate (mod_ssl's SSL_CLIENT_S_DN_CN).
    pub peer_user: Option<String>,
    /// The request path.
    pub path: String,
}

#[derive(Default)]
pub struct State {
    pub users: BTreeMap<i64, User>,
    pub hosts: BTreeMap<i64, Host>,
    pub sessions: BTreeMap<i64, Session>,
    pub tasks: BTreeMap<i64, Task>,
    pub buildroots: BTreeMap<i64, Buildroot>,
    pub refusals: Vec<(i64, i64, bool, String)>,
    pub calls: Vec<CallRecord>,
    pub injections: Vec<Injection>,
    pub offline: bool,
    pub topdir: PathBuf,
    next_id: i64,
    /// max number of tasks OPEN at once, per host
    pub max_open: HashMap<i64, usize>,
    pub check_callnum: bool,
    pub max_jobs_default: i64,
}

impl State {
    fn next(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn host_of_user(&self, user_id: i64) -> Option<&Host> {
        self.hosts.values().find(|h| h.user_id == user_id)
    }

    fn user_name(&self, id: i64) -> String {
        self.users
            .get(&id)
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    /// The host of the calling session; AuthError/exclusivity as `Host.verify()`.
    pub fn verify_host(&self, ctx: &Ctx) -> Result<i64, Fault> {
        let Some(uid) = ctx.user_id else {
            return Err(fault(1002, "Not logged-in"));
        };
        let Some(host) = self.host_of_user(uid) else {
            return Err(fault(1002, format!("User {uid} is not a host")));
        };
        let sid = ctx.session.unwrap_or(0);
        if !self.is_exclusive(sid) {
            return Err(fault(1002, "This method requires an exclusive session"));
        }
        Ok(host.id)
    }

    fn is_exclusive(&self, sid: i64) -> bool {
        match self.sessions.get(&sid) {
            Some(s) if s.exclusive => true,
            Some(s) => s.master.is_some_and(|m| {
                self.sessions
                    .get(&m)
                    .is_some_and(|ms| ms.exclusive && !ms.closed)
            }),
            None => false,
        }
    }

    pub fn assert_host(&self, task_id: i64, host_id: i64) -> Result<(), Fault> {
        match self.tasks.get(&task_id) {
            Some(t) if t.state == OPEN && t.host_id == Some(host_id) => Ok(()),
            _ => Err(fault(
                1004,
                format!("host {host_id} does not own task {task_id}"),
            )),
        }
    }

    pub fn task_info(&self, t: &Task, request: bool) -> Value {
        let mut s = Struct::new();
        s.insert("id".into(), Value::Int(t.id));
        s.insert("state".into(), Value::Int(t.state));
        s.insert("create_ts".into(), Value::Double(t.create_ts));
        s.insert(
            "start_ts".into(),
            t.start_ts.map_or(Value::Nil, Value::Double),
        );
        s.insert(
            "completion_ts".into(),
            t.completion_ts.map_or(Value::Nil, Value::Double),
        );
        s.insert("channel_id".into(), Value::Int(1));
        s.insert("host_id".into(), t.host_id.map_or(Value::Nil, Value::Int));
        s.insert("parent".into(), t.parent.map_or(Value::Nil, Value::Int));
        s.insert(
            "label".into(),
            t.label.clone().map_or(Value::Nil, Value::String),
        );
        s.insert("waiting".into(), Value::Bool(t.waiting));
        s.insert("awaited".into(), Value::Bool(t.awaited));
        s.insert("owner".into(), Value::Int(t.owner));
        s.insert("method".into(), Value::from(t.method.as_str()));
        s.insert("arch".into(), Value::from(t.arch.as_str()));
        s.insert("priority".into(), Value::Int(t.priority));
        s.insert("weight".into(), Value::Double(t.weight));
        if request {
            let params = decode_call(t.request.as_bytes())
                .map(|c| c.params)
                .unwrap_or_default();
            s.insert("request".into(), Value::Array(params));
        }
        Value::Struct(s)
    }

    fn host_value(&self, h: &Host) -> Value {
        Value::struct_from([
            ("id", Value::Int(h.id)),
            ("user_id", Value::Int(h.user_id)),
            ("name", Value::from(h.name.as_str())),
            ("update_ts", h.update_ts.map_or(Value::Nil, Value::Double)),
            ("ready", Value::Bool(h.ready)),
            ("task_load", Value::Double(h.task_load)),
            ("arches", Value::from(h.arches.as_str())),
            ("capacity", Value::Double(h.capacity)),
            ("description", Value::Nil),
            ("comment", Value::Nil),
            ("enabled", Value::Bool(h.enabled)),
        ])
    }

    /// Make a task (the admin's `makeTask`).
    pub fn make_task(
        &mut self,
        method: &str,
        args: Vec<Value>,
        arch: &str,
        priority: i64,
        parent: Option<i64>,
    ) -> i64 {
        let id = self.next();
        self.tasks.insert(
            id,
            Task {
                id,
                method: method.to_owned(),
                request: encode_call(method, &args),
                state: FREE,
                host_id: None,
                parent,
                label: None,
                arch: arch.to_owned(),
                priority,
                weight: 1.0,
                waiting: false,
                awaited: false,
                owner: 1,
                result: None,
                create_ts: now(),
                start_ts: None,
                completion_ts: None,
                opened: 0,
            },
        );
        id
    }

    fn finished(state: i64) -> bool {
        matches!(state, CLOSED | CANCELED | FAILED)
    }

    fn wait_check(&self, parent: i64) -> (Vec<i64>, Vec<i64>) {
        let mut fin = Vec::new();
        let mut unfin = Vec::new();
        for t in self
            .tasks
            .values()
            .filter(|t| t.parent == Some(parent) && t.awaited)
        {
            if Self::finished(t.state) {
                fin.push(t.id);
            } else {
                unfin.push(t.id);
            }
        }
        (fin, unfin)
    }

    /// The hub's scheduler, run inside getTasks when the host has nothing assigned.
    fn schedule(&mut self, host_id: i64) {
        let Some(h) = self.hosts.get(&host_id).cloned() else {
            return;
        };
        if !h.enabled || !h.ready {
            return;
        }
        let maxjobs = h
            .data
            .get("maxjobs")
            .and_then(Value::as_i64)
            .unwrap_or(self.max_jobs_default);
        let mut arches: Vec<&str> = h.arches.split_whitespace().collect();
        arches.push("noarch");
        let mut free: Vec<&Task> = self.tasks.values().filter(|t| t.state == FREE).collect();
        free.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.id.cmp(&b.id)));
        let free: Vec<i64> = free
            .into_iter()
            .filter(|t| arches.contains(&t.arch.as_str()))
            .filter(|t| !self.refusals.iter().any(|r| r.0 == t.id && r.1 == host_id))
            .map(|t| t.id)
            .collect();
        for id in free {
            let mine: Vec<&Task> = self
                .tasks
                .values()
                .filter(|t| t.host_id == Some(host_id) && matches!(t.state, OPEN | ASSIGNED))
                .collect();
            let load: f64 = mine.iter().filter(|t| !t.waiting).map(|t| t.weight).sum();
            if mine.len() as i64 >= maxjobs || h.capacity - load <= (1.0f64 - 5.0).max(0.0) {
                break;
            }
            if let Some(t) = self.tasks.get_mut(&id) {
                t.state = ASSIGNED;
                t.host_id = Some(host_id);
            }
        }
    }

    fn note_open(&mut self, host_id: i64) {
        let n = self
            .tasks
            .values()
            .filter(|t| t.host_id == Some(host_id) && t.state == OPEN)
            .count();
        let e = self.max_open.entry(host_id).or_insert(0);
        *e = (*e).max(n);
    }

    fn new_session(&mut self, user_id: i64, master: Option<i64>) -> Value {
        let id = self.next();
        let key = format!("{user_id}-{:019}", id * 7919);
        self.sessions.insert(
            id,
            Session {
                id,
                key: key.clone(),
                user_id,
                master,
                exclusive: false,
                closed: false,
                expired: false,
                callnum: None,
                start_ts: now(),
                seen: Vec::new(),
            },
        );
        Value::struct_from([
            ("session-id", Value::Int(id)),
            ("session-key", Value::String(key)),
            ("header-auth", Value::Bool(true)),
        ])
    }

    fn work(&self, rel: &str) -> PathBuf {
        self.topdir.join("work").join(rel)
    }

    fn upload_path(
        &self,
        ctx: &Ctx,
        reldir: &str,
        name: &str,
        create: bool,
    ) -> Result<PathBuf, Fault> {
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(fault(1000, format!("Invalid upload filename: {name}")));
        }
        if reldir.is_empty() || reldir.starts_with("..") || reldir.split('/').any(|p| p == "..") {
            return Err(fault(1000, format!("Invalid upload directory: {reldir}")));
        }
        let parts: Vec<&str> = reldir.split('/').collect();
        if create && parts[0] == "tasks" {
            let task_id: i64 = parts
                .get(2)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| fault(1000, format!("Invalid task upload directory: {reldir}")))?;
            let host = self.verify_host(ctx)?;
            self.assert_host(task_id, host)?;
        }
        Ok(self.work(reldir).join(name))
    }
}

/// The accept loop and the connection tasks of a running server.
type ServerTasks = (tokio::task::JoinHandle<()>, Arc<Mutex<JoinSet<()>>>);
/// (session id, user id, call number) of a request.
type SessionRef = (Option<i64>, Option<i64>, Option<i64>);

type Handler =
    Arc<dyn Fn(&mut State, &Ctx, Vec<Value>, Struct) -> Result<Value, Fault> + Send + Sync>;

struct Shared {
    state: Mutex<State>,
    methods: Mutex<HashMap<String, Handler>>,
}

/// TLS for the fake hub: its certificate, the CA its clients' certificates must chain
/// to, and which client certificate (PEM file) is which user.
#[derive(Clone)]
pub struct TlsSetup {
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_ca: PathBuf,
    pub clients: Vec<(PathBuf, String)>,
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    users: Vec<(Vec<u8>, String)>,
}

fn load_tls(t: &TlsSetup) -> Tls {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.server_cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&t.server_key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&t.client_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let users = t
        .clients
        .iter()
        .map(|(pem, user)| {
            let der = CertificateDer::pem_file_iter(pem)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            (der.as_ref().to_vec(), user.clone())
        })
        .collect();
    Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        users,
    }
}

/// The fake hub. Dropping it stops the server.
pub struct FakeHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
    server: Mutex<Option<ServerTasks>>,
    _topdir: tempfile::TempDir,
}

fn arg(args: &[Value], kw: &Struct, i: usize, name: &str) -> Option<Value> {
    args.get(i).cloned().or_else(|| kw.get(name).cloned())
}

fn int_arg(args: &[Value], kw: &Struct, i: usize, name: &str) -> Result<i64, Fault> {
    arg(args, kw, i, name)
        .and_then(|v| v.as_i64())
        .ok_or_else(|| fault(1019, format!("missing or bad argument {name}")))
}

impl FakeHub {
    /// Start a hub with users `kojiadmin` (id 1) and build hosts `builder1..=N`
    /// (passwords `<name>-pw`), capacity 4.0, arches `x86_64`.
    pub async fn start(hosts: usize) -> FakeHub {
        FakeHub::start_with(hosts, None).await
    }

    /// The same over HTTPS, with client certificates for `sslLogin`.
    pub async fn start_tls(hosts: usize, tls: TlsSetup) -> FakeHub {
        FakeHub::start_with(hosts, Some(tls)).await
    }

    async fn start_with(hosts: usize, tls: Option<TlsSetup>) -> FakeHub {
        let topdir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(topdir.path().join("work")).unwrap();
        let mut st = State {
            topdir: topdir.path().to_owned(),
            check_callnum: true,
            max_jobs_default: 15,
            ..Default::default()
        };
        st.users.insert(
            1,
            User {
                id: 1,
                name: "kojiadmin".into(),
                password: "kojiadmin-pw".into(),
            },
        );
        st.next_id = 100;
        for i in 1..=hosts {
            let uid = 1 + i as i64;
            let name = format!("builder{i}");
            st.users.insert(
                uid,
                User {
                    id: uid,
                    name: name.clone(),
                    password: format!("{name}-pw"),
                },
            );
            st.hosts.insert(
                i as i64,
                Host {
                    id: i as i64,
                    user_id: uid,
                    name,
                    arches: "x86_64".into(),
                    capacity: 4.0,
                    enabled: true,
                    ready: false,
                    task_load: 0.0,
                    update_ts: None,
                    data: Value::Nil,
                    update_calls: 0,
                },
            );
        }
        // task ids start at 1000 so they never collide with session ids in logs
        st.next_id = 1000;
        let shared = Arc::new(Shared {
            state: Mutex::new(st),
            methods: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = FakeHub {
            shared,
            addr,
            tls: tls.as_ref().map(|t| Arc::new(load_tls(t))),
            server: Mutex::new(None),
            _topdir: topdir,
        };
        hub.register_builtin();
        hub.serve(listener);
        hub
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let conns2 = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                let tls = tls.clone();
                let fut = async move {
                    match tls {
                        None => serve_conn(shared, TokioIo::new(stream), None).await,
                        Some(tls) => {
                            let Ok(s) = tls.acceptor.accept(stream).await else {
                                return;
                            };
                            let peer = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|der| tls.users.iter().find(|(d, _)| d == der.as_ref()))
                                .map(|(_, u)| u.clone());
                            serve_conn(shared, TokioIo::new(s), peer).await
                        }
                    }
                };
                conns2.lock().unwrap().spawn(fut);
            }
        });
        *self.server.lock().unwrap() = Some((accept, conns));
    }

    /// The hub URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/kojihub", self.addr)
    }

    /// The temporary topdir (uploads land in `<topdir>/work`).
    pub fn topdir(&self) -> PathBuf {
        self.shared.state.lock().unwrap().topdir.clone()
    }

    /// Stop serving: the port refuses connections, open connections are cut.
    pub fn stop(&self) {
        if let Some((accept, conns)) = self.server.lock().unwrap().take() {
            accept.abort();
            conns.lock().unwrap().abort_all();
        }
    }

    /// Serve again on the same address, with the same database (a hub restart).
    pub async fn restart(&self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Run `f` on the database.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.state.lock().unwrap())
    }

    /// Add or replace a method.
    pub fn register<F>(&self, name: &str, f: F)
    where
        F: Fn(&mut State, &Ctx, Vec<Value>, Struct) -> Result<Value, Fault> + Send + Sync + 'static,
    {
        self.shared
            .methods
            .lock()
            .unwrap()
            .insert(name.to_owned(), Arc::new(f));
    }

    /// Inject `action` for the next `times` calls of `method` (`rawUpload` for uploads).
    pub fn inject(&self, method: &str, times: u32, action: Action) {
        self.with(|s| {
            s.injections.push(Injection {
                method: method.to_owned(),
                remaining: times,
                action,
            })
        });
    }

    /// Create a task as an admin would (`makeTask`).
    pub fn make_task(&self, method: &str, args: Vec<Value>) -> i64 {
        self.with(|s| s.make_task(method, args, "noarch", 20, None))
    }

    /// A task's state.
    pub fn task(&self, id: i64) -> Task {
        self.with(|s| s.tasks.get(&id).cloned().expect("no such task"))
    }

    /// Cancel a task and its descendants.
    pub fn cancel(&self, id: i64) {
        self.with(|s| cancel_tree(s, id));
    }

    /// Expire every session (as SessionRenewalTimeout would).
    pub fn expire_sessions(&self) {
        self.with(|s| {
            for sess in s.sessions.values_mut() {
                if !sess.closed {
                    sess.expired = true;
                }
            }
        });
    }

    /// The decoded result of a closed/failed task.
    pub fn result(&self, id: i64) -> Option<MethodResponse> {
        let t = self.task(id);
        t.result
            .map(|r| decode_response(r.as_bytes()).expect("stored result is not XML-RPC"))
    }

    /// Calls of `method` seen so far.
    pub fn calls_of(&self, method: &str) -> Vec<CallRecord> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect()
        })
    }

    fn register_builtin(&self) {
        self.register("echo", |_, _, a, _| Ok(Value::Array(a)));
        self.register("getKojiVersion", |_, _, _, _| Ok(Value::from("1.35.3")));
        self.register("login", |s, ctx, a, kw| {
            let user = arg(&a, &kw, 0, "user")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let pw = arg(&a, &kw, 1, "password")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let Some(u) = s
                .users
                .values()
                .find(|u| u.name == user && u.password == pw && !pw.is_empty())
                .cloned()
            else {
                return Err(fault(1002, "invalid username or password"));
            };
            let renew = kw.get("renew").is_some_and(Value::truthy);
            if renew {
                if let Some(sid) = ctx.session {
                    let sess = s
                        .sessions
                        .get_mut(&sid)
                        .ok_or_else(|| fault(1002, "no session"))?;
                    if let Some(m) = sess.master {
                        let _ = m;
                    }
                    sess.key = format!("{}-{:019}", u.id, now() as i64 + sid);
                    sess.expired = false;
                    if kw.get("exclusive").is_some_and(Value::truthy) {
                        // the hub finds its own row still exclusive (notes §1.7)
                        return Err(fault(1006, "Cannot get exclusive session"));
                    }
                    return Ok(Value::struct_from([
                        ("session-id", Value::Int(sid)),
                        ("session-key", Value::String(sess.key.clone())),
                        ("header-auth", Value::Bool(true)),
                    ]));
                }
            } else if ctx.user_id.is_some() {
                return Err(fault(1002, "Already logged in"));
            }
            Ok(s.new_session(u.id, None))
        });
        self.register("sslLogin", |s, ctx, _, kw| {
            if !ctx.path.ends_with("/ssllogin") {
                return Err(fault(1002, "sslLogin must be posted to /ssllogin"));
            }
            let Some(name) = ctx.peer_user.clone() else {
                return Err(fault(
                    1002,
                    "could not verify client: no client certificate",
                ));
            };
            let u = s
                .users
                .values()
                .find(|u| u.name == name)
                .cloned()
                .ok_or_else(|| fault(1002, format!("Unknown user: {name}")))?;
            if kw.get("renew").is_some_and(Value::truthy) {
                if let Some(sid) = ctx.session {
                    let sess = s
                        .sessions
                        .get_mut(&sid)
                        .ok_or_else(|| fault(1002, "no session"))?;
                    sess.key = format!("{}-{:019}", u.id, now() as i64 + sid);
                    sess.expired = false;
                    return Ok(Value::struct_from([
                        ("session-id", Value::Int(sid)),
                        ("session-key", Value::String(sess.key.clone())),
                        ("header-auth", Value::Bool(true)),
                    ]));
                }
            } else if ctx.user_id.is_some() {
                return Err(fault(1002, "Already logged in"));
            }
            Ok(s.new_session(u.id, None))
        });
        self.register("getSessionInfo", |s, ctx, _, _| {
            let sid = ctx.session.ok_or_else(|| fault(1002, "Not logged in"))?;
            let sess = &s.sessions[&sid];
            Ok(Value::struct_from([
                ("session-id", Value::Int(sid)),
                ("user_id", Value::Int(sess.user_id)),
                ("start_ts", Value::Double(sess.start_ts)),
                ("exclusive", Value::Bool(sess.exclusive)),
            ]))
        });
        self.register("exclusiveSession", |s, ctx, _, kw| {
            let sid = ctx.session.ok_or_else(|| fault(1002, "Not logged in"))?;
            let force = kw.get("force").is_some_and(Value::truthy);
            let me = s.sessions[&sid].clone();
            if me.master.is_some() {
                return Err(fault(1002, "Subsessions cannot become exclusive"));
            }
            let others: Vec<i64> = s
                .sessions
                .values()
                .filter(|o| o.user_id == me.user_id && o.exclusive && !o.closed && o.id != sid)
                .map(|o| o.id)
                .collect();
            if !others.is_empty() {
                if !force {
                    return Err(fault(1006, "Cannot get exclusive session"));
                }
                for o in others {
                    close_session(s, o);
                }
            }
            if let Some(m) = s.sessions.get_mut(&sid) {
                m.exclusive = true;
            }
            Ok(Value::Nil)
        });
        self.register("subsession", |s, ctx, _, _| {
            let sid = ctx.session.ok_or_else(|| fault(1002, "Not logged in"))?;
            let me = s.sessions[&sid].clone();
            Ok(s.new_session(me.user_id, Some(me.master.unwrap_or(sid))))
        });
        self.register("logout", |s, ctx, _, _| {
            if let Some(sid) = ctx.session {
                close_session(s, sid);
            }
            Ok(Value::Nil)
        });
        self.register("logoutChild", |s, ctx, a, kw| {
            let child = int_arg(&a, &kw, 0, "session_id")?;
            let sid = ctx.session.ok_or_else(|| fault(1002, "Not logged in"))?;
            match s.sessions.get(&child) {
                Some(c) if c.master == Some(sid) => {
                    close_session(s, child);
                    Ok(Value::Nil)
                }
                _ => Err(fault(1002, format!("{child} is not a subsession of {sid}"))),
            }
        });
        self.register("host.getID", |s, ctx, _, _| {
            Ok(Value::Int(s.verify_host(ctx)?))
        });
        self.register("host.getHost", |s, ctx, _, _| {
            let h = s.verify_host(ctx)?;
            Ok(s.host_value(&s.hosts[&h].clone()))
        });
        self.register("host.updateHost", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let load = arg(&a, &kw, 0, "task_load")
                .and_then(|v| v.as_f64())
                .ok_or_else(|| fault(1019, "task_load"))?;
            let ready = arg(&a, &kw, 1, "ready")
                .map(|v| v.truthy())
                .unwrap_or(false);
            let data = arg(&a, &kw, 2, "data");
            let host = s.hosts.get_mut(&h).unwrap();
            host.task_load = load;
            host.ready = ready;
            host.update_ts = Some(now());
            host.update_calls += 1;
            if let Some(d) = data {
                if !d.is_nil() {
                    host.data = d;
                }
            }
            Ok(Value::Nil)
        });
        self.register("host.getTasks", |s, ctx, _, _| {
            let h = s.verify_host(ctx)?;
            let assigned = |s: &State| -> Vec<Value> {
                let mut v: Vec<&Task> = s
                    .tasks
                    .values()
                    .filter(|t| t.state == ASSIGNED && t.host_id == Some(h))
                    .collect();
                v.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.id.cmp(&b.id)));
                v.into_iter()
                    .map(|t| {
                        Value::struct_from([
                            ("id", Value::Int(t.id)),
                            ("state", Value::Int(t.state)),
                            ("channel_id", Value::Int(1)),
                            ("host_id", Value::Int(h)),
                            ("arch", Value::from(t.arch.as_str())),
                            ("method", Value::from(t.method.as_str())),
                            ("priority", Value::Int(t.priority)),
                            ("create_ts", Value::Double(t.create_ts)),
                        ])
                    })
                    .collect()
            };
            let mut tasks = assigned(s);
            if tasks.is_empty() {
                s.schedule(h);
                tasks = assigned(s);
            }
            Ok(Value::Array(tasks))
        });
        self.register("host.getHostTasks", |s, ctx, _, _| {
            let h = s.verify_host(ctx)?;
            let open: Vec<Task> = s
                .tasks
                .values()
                .filter(|t| t.host_id == Some(h) && t.state == OPEN)
                .cloned()
                .collect();
            Ok(Value::Array(
                open.iter()
                    .map(|t| {
                        let mut v = Struct::new();
                        v.insert("id".into(), Value::Int(t.id));
                        v.insert("waiting".into(), Value::Bool(t.waiting));
                        v.insert("weight".into(), Value::Double(t.weight));
                        if t.waiting && !s.wait_check(t.id).0.is_empty() {
                            v.insert("alert".into(), Value::Bool(true));
                        }
                        Value::Struct(v)
                    })
                    .collect(),
            ))
        });
        self.register("getTaskInfo", |s, _, a, kw| {
            let id = int_arg(&a, &kw, 0, "task_id")?;
            let request = arg(&a, &kw, 1, "request").is_some_and(|v| v.truthy());
            Ok(s.tasks
                .get(&id)
                .map_or(Value::Nil, |t| s.task_info(t, request)))
        });
        self.register("host.openTask", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let id = int_arg(&a, &kw, 0, "task_id")?;
            let Some(t) = s.tasks.get_mut(&id) else {
                return Ok(Value::Nil);
            };
            let ok = t.state == FREE || (t.state == ASSIGNED && t.host_id == Some(h));
            if !ok {
                return Ok(Value::Nil);
            }
            t.state = OPEN;
            t.host_id = Some(h);
            t.start_ts = Some(now());
            t.opened += 1;
            let t = t.clone();
            s.note_open(h);
            let mut info = s.task_info(&t, false);
            if let Value::Struct(m) = &mut info {
                m.insert("request".into(), Value::String(t.request.clone()));
            }
            Ok(info)
        });
        for (name, state) in [("host.closeTask", CLOSED), ("host.failTask", FAILED)] {
            self.register(name, move |s, ctx, a, kw| {
                let h = s.verify_host(ctx)?;
                let id = int_arg(&a, &kw, 0, "task_id")?;
                let response = arg(&a, &kw, 1, "response")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .ok_or_else(|| fault(1019, "response must be a string"))?;
                s.assert_host(id, h)?;
                let t = s.tasks.get_mut(&id).unwrap();
                t.state = state;
                t.result = Some(response);
                t.completion_ts = Some(now());
                Ok(Value::Nil)
            });
        }
        self.register("host.freeTasks", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let ids = arg(&a, &kw, 0, "tasks")
                .and_then(|v| v.as_array().map(<[Value]>::to_vec))
                .unwrap_or_default();
            for id in ids.iter().filter_map(Value::as_i64) {
                if let Some(t) = s.tasks.get_mut(&id) {
                    if t.state == OPEN && t.host_id == Some(h) {
                        t.state = FREE;
                        t.host_id = None;
                    }
                }
            }
            Ok(Value::Nil)
        });
        self.register("host.refuseTask", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let id = int_arg(&a, &kw, 0, "task_id")?;
            let soft = arg(&a, &kw, 1, "soft").is_none_or(|v| v.truthy());
            let msg = arg(&a, &kw, 2, "msg")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let Some(t) = s.tasks.get_mut(&id) else {
                return Err(fault(1000, "no such task"));
            };
            if t.host_id != Some(h) {
                return Ok(Value::Nil);
            }
            if matches!(t.state, OPEN | ASSIGNED) {
                t.state = FREE;
                t.host_id = None;
            }
            s.refusals.push((id, h, soft, msg));
            Ok(Value::Nil)
        });
        self.register("host.setTaskWeight", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let id = int_arg(&a, &kw, 0, "task_id")?;
            let w = arg(&a, &kw, 1, "weight")
                .and_then(|v| v.as_f64())
                .ok_or_else(|| fault(1019, "weight"))?;
            s.assert_host(id, h)?;
            s.tasks.get_mut(&id).unwrap().weight = w;
            Ok(Value::Nil)
        });
        self.register("host.subtask", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let method = arg(&a, &kw, 0, "method")
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| fault(1019, "method"))?;
            let arglist = arg(&a, &kw, 1, "arglist")
                .and_then(|v| v.as_array().map(<[Value]>::to_vec))
                .ok_or_else(|| fault(1019, "arglist"))?;
            let parent = int_arg(&a, &kw, 2, "parent")?;
            s.assert_host(parent, h)?;
            if kw.contains_key("owner") {
                return Err(fault(1004, "owner is not allowed"));
            }
            let label = kw.get("label").and_then(Value::as_str).map(str::to_owned);
            if let Some(l) = &label {
                if let Some(t) = s
                    .tasks
                    .values()
                    .find(|t| t.parent == Some(parent) && t.label.as_deref() == Some(l))
                {
                    return Ok(Value::Int(t.id));
                }
            }
            let p = s.tasks[&parent].clone();
            let mut args = arglist;
            if let Some(Value::Struct(kwa)) = kw.get("kwargs") {
                args = koji_adjutant::xmlrpc::encode_args(args, kwa.clone());
            }
            let arch = kw
                .get("arch")
                .and_then(Value::as_str)
                .unwrap_or(&p.arch)
                .to_owned();
            let priority = kw
                .get("priority")
                .and_then(Value::as_i64)
                .unwrap_or(p.priority - 1);
            let id = s.make_task(&method, args, &arch, priority, Some(parent));
            let t = s.tasks.get_mut(&id).unwrap();
            t.label = label;
            t.owner = p.owner;
            if let Some(assign) = kw.get("assign").and_then(Value::as_i64) {
                t.state = ASSIGNED;
                t.host_id = Some(assign);
            }
            Ok(Value::Int(id))
        });
        self.register("host.taskSetWait", |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let parent = int_arg(&a, &kw, 0, "parent")?;
            let tasks: Option<Vec<i64>> = arg(&a, &kw, 1, "tasks").and_then(|v| {
                v.as_array()
                    .map(|x| x.iter().filter_map(Value::as_i64).collect())
            });
            if let Some(p) = s.tasks.get_mut(&parent) {
                p.waiting = true;
            }
            for t in s.tasks.values_mut().filter(|t| t.parent == Some(parent)) {
                t.awaited = match &tasks {
                    None => true,
                    Some(list) => list.contains(&t.id),
                };
            }
            Ok(Value::Nil)
        });
        self.register("host.taskWait", |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let parent = int_arg(&a, &kw, 0, "parent")?;
            let (fin, unfin) = s.wait_check(parent);
            for id in &fin {
                s.tasks.get_mut(id).unwrap().awaited = false;
            }
            let ids = |v: Vec<i64>| Value::Array(v.into_iter().map(Value::Int).collect());
            Ok(Value::Array(vec![ids(fin), ids(unfin)]))
        });
        self.register("host.taskWaitResults", |s, ctx, a, kw| {
            s.verify_host(ctx)?;
            let parent = int_arg(&a, &kw, 0, "parent")?;
            let canfail: Vec<i64> = arg(&a, &kw, 2, "canfail")
                .and_then(|v| {
                    v.as_array()
                        .map(|x| x.iter().filter_map(Value::as_i64).collect())
                })
                .unwrap_or_default();
            if let Some(p) = s.tasks.get_mut(&parent) {
                p.waiting = false;
            }
            let tasks: Vec<i64> = match arg(&a, &kw, 1, "tasks").filter(|v| !v.is_nil()) {
                Some(v) => v
                    .as_array()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_i64)
                    .collect(),
                None => s
                    .tasks
                    .values()
                    .filter(|t| t.parent == Some(parent) && State::finished(t.state))
                    .map(|t| t.id)
                    .collect(),
            };
            let mut out = Vec::new();
            for id in tasks {
                let r = task_result(s, id);
                match r {
                    Ok(v) => out.push(Value::Array(vec![Value::Int(id), v])),
                    Err(f) if canfail.contains(&id) => {
                        out.push(Value::Array(vec![Value::Int(id), f.to_value()]))
                    }
                    Err(f) => return Err(f),
                }
            }
            Ok(Value::Array(out))
        });
        self.register("getTaskResult", |s, _, a, kw| {
            let id = int_arg(&a, &kw, 0, "task_id")?;
            task_result(s, id)
        });
        self.register("taskFinished", |s, _, a, kw| {
            let id = int_arg(&a, &kw, 0, "task_id")?;
            Ok(Value::Bool(
                s.tasks.get(&id).is_some_and(|t| State::finished(t.state)),
            ))
        });
        self.register("cancelTaskChildren", |s, _, a, kw| {
            let id = int_arg(&a, &kw, 0, "task_id")?;
            let kids: Vec<i64> = s
                .tasks
                .values()
                .filter(|t| t.parent == Some(id))
                .map(|t| t.id)
                .collect();
            for k in kids {
                cancel_tree(s, k);
            }
            Ok(Value::Nil)
        });
        self.register("listBuildroots", |s, _, a, kw| {
            let _ = a;
            let host = kw.get("hostID").and_then(Value::as_i64);
            let states: Option<Vec<i64>> = kw.get("state").and_then(|v| {
                v.as_array()
                    .map(|x| x.iter().filter_map(Value::as_i64).collect())
            });
            Ok(Value::Array(
                s.buildroots
                    .values()
                    .filter(|b| host.is_none_or(|h| b.host_id == h))
                    .filter(|b| states.as_ref().is_none_or(|st| st.contains(&b.state)))
                    .map(|b| {
                        Value::struct_from([
                            ("id", Value::Int(b.id)),
                            ("host_id", Value::Int(b.host_id)),
                            ("task_id", b.task_id.map_or(Value::Nil, Value::Int)),
                            ("state", Value::Int(b.state)),
                            ("tag_name", Value::from("dist-build")),
                            ("arch", Value::from("x86_64")),
                        ])
                    })
                    .collect(),
            ))
        });
        self.register("host.setBuildRootState", |s, ctx, a, kw| {
            let h = s.verify_host(ctx)?;
            let id = int_arg(&a, &kw, 0, "brootid")?;
            let state = int_arg(&a, &kw, 1, "state")?;
            let b = s
                .buildroots
                .get_mut(&id)
                .ok_or_else(|| fault(1000, "no such buildroot"))?;
            if b.host_id != h {
                return Err(fault(1004, "buildroot is not ours"));
            }
            if state == 0 {
                return Err(fault(1000, "cannot set buildroot state to INIT"));
            }
            b.state = state;
            Ok(Value::Nil)
        });
        self.register("listHosts", |s, _, _, kw| {
            let enabled = kw.get("enabled").map(Value::truthy);
            Ok(Value::Array(
                s.hosts
                    .values()
                    .filter(|h| enabled.is_none_or(|e| h.enabled == e))
                    .map(|h| s.host_value(h))
                    .collect(),
            ))
        });
        self.register("getChannel", |_, _, a, _| {
            Ok(Value::struct_from([
                ("id", Value::Int(1)),
                ("name", a.first().cloned().unwrap_or_default()),
            ]))
        });
        self.register("checkUpload", |s, ctx, a, kw| {
            let path = arg(&a, &kw, 0, "path")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = arg(&a, &kw, 1, "name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let verify = arg(&a, &kw, 2, "verify").and_then(|v| v.as_str().map(str::to_owned));
            let p = s.upload_path(ctx, &path, &name, false)?;
            let Ok(data) = std::fs::read(&p) else {
                return Ok(Value::Nil);
            };
            let mut out = Struct::new();
            out.insert("size".into(), Value::Int(data.len() as i64));
            out.insert("mtime".into(), Value::Double(now()));
            if let Some(v) = verify {
                if v != "adler32" {
                    return Err(fault(1000, format!("unsupported verify type {v}")));
                }
                out.insert("sumlength".into(), Value::Int(data.len() as i64));
                out.insert(
                    "hexdigest".into(),
                    Value::String(format!("{:08x}", adler2::adler32_slice(&data))),
                );
            }
            Ok(Value::Struct(out))
        });
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn close_session(s: &mut State, sid: i64) {
    let ids: Vec<i64> = s
        .sessions
        .values()
        .filter(|x| x.id == sid || x.master == Some(sid))
        .map(|x| x.id)
        .collect();
    for id in ids {
        if let Some(x) = s.sessions.get_mut(&id) {
            x.closed = true;
            x.exclusive = false;
        }
    }
}

fn cancel_tree(s: &mut State, id: i64) {
    if let Some(t) = s.tasks.get_mut(&id) {
        if !State::finished(t.state) {
            t.state = CANCELED;
            t.completion_ts = Some(now());
        }
    }
    let kids: Vec<i64> = s
        .tasks
        .values()
        .filter(|t| t.parent == Some(id))
        .map(|t| t.id)
        .collect();
    for k in kids {
        cancel_tree(s, k);
    }
}

fn task_result(s: &State, id: i64) -> Result<Value, Fault> {
    let t = s
        .tasks
        .get(&id)
        .ok_or_else(|| fault(1000, format!("No such task: {id}")))?;
    match t.state {
        CLOSED | FAILED => {
            let text = t.result.clone().unwrap_or_default();
            match decode_response(text.as_bytes()) {
                Ok(MethodResponse::Params(mut p)) if p.len() == 1 => Ok(p.pop().unwrap()),
                Ok(MethodResponse::Fault(f)) => Err(f),
                other => Err(fault(1, format!("bad stored result: {other:?}"))),
            }
        }
        CANCELED => Err(fault(1000, format!("Task {id} was canceled"))),
        _ => Err(fault(1000, format!("Task {id} is not finished"))),
    }
}

type Resp = Response<Full<Bytes>>;

fn xml_response(text: String) -> Resp {
    Response::builder()
        .header("Content-Type", "text/xml")
        .header("Koji-Version", "1.35.3")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}
impl std::error::Error for Dropped {}

fn take_injection(s: &mut State, method: &str) -> Option<Action> {
    let i = s
        .injections
        .iter()
        .position(|i| i.method == method && i.remaining > 0)?;
    s.injections[i].remaining -= 1;
    let a = s.injections[i].action.clone();
    if s.injections[i].remaining == 0 {
        s.injections.remove(i);
    }
    Some(a)
}

/// Resolve the session of a request and check its call number (`auth.Session`).
fn session_of(
    s: &mut State,
    headers: &hyper::HeaderMap,
    method: &str,
) -> Result<SessionRef, Fault> {
    let get = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(sid) = get("Koji-Session-Id") else {
        return Ok((None, None, None));
    };
    let sid: i64 = sid.parse().map_err(|_| fault(1002, "bad session id"))?;
    let key = get("Koji-Session-Key").unwrap_or_default();
    // the post-1.35.3 hub reads Koji-Session-Callnum, the 1.35.3 one Koji-Callnum
    let callnum: Option<i64> = get("Koji-Session-Callnum")
        .or_else(|| get("Koji-Callnum"))
        .and_then(|c| c.parse().ok());
    let sess = s
        .sessions
        .get(&sid)
        .filter(|x| x.key == key && !x.closed)
        .cloned()
        .ok_or_else(|| fault(1002, "Invalid session or bad credentials"))?;
    if sess.expired && method != "login" && method != "sslLogin" {
        return Err(fault(1007, format!("session \"{sid}\" has expired")));
    }
    if let (Some(c), true) = (callnum, s.check_callnum) {
        if let Some(last) = sess.callnum {
            if last > c {
                return Err(fault(1008, format!("{last} > {c} (session {sid})")));
            }
            if last == c && !RETRY_WHITELIST.contains(&method) {
                return Err(fault(
                    1009,
                    format!("unable to retry call {c} (method {method}) for session {sid}"),
                ));
            }
        }
        s.sessions.get_mut(&sid).unwrap().seen.push(c);
    }
    // exclusivity: another session of this user holding the lock
    if !matches!(method, "exclusiveSession" | "login" | "logout") && !sess.exclusive {
        let locked = s.sessions.values().any(|o| {
            o.user_id == sess.user_id
                && o.exclusive
                && !o.closed
                && Some(o.id) != sess.master
                && o.id != sid
        });
        if locked {
            return Err(fault(1006, "User locked by another session"));
        }
    }
    Ok((Some(sid), Some(sess.user_id), callnum))
}

async fn serve_conn<I>(shared: Arc<Shared>, io: I, peer: Option<String>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let peer = peer.clone();
        async move { handle(shared, req, peer).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: Option<String>,
) -> Result<Resp, Dropped> {
    if req.method() != hyper::Method::POST {
        return Ok(Response::builder()
            .status(405)
            .header("Allow", "POST")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let is_upload = req
        .headers()
        .get("Content-Type")
        .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
    let headers = req.headers().clone();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let path = req.uri().path().to_owned();
    if is_upload {
        return handle_upload(shared, headers, query, req.into_body()).await;
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|_| Dropped)?
        .to_bytes();
    let call = match decode_call(&body) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Response::builder()
                .status(400)
                .body(Full::new(Bytes::from(format!("bad request: {e}"))))
                .unwrap());
        }
    };
    let injected = {
        let mut st = shared.state.lock().unwrap();
        let injected = take_injection(&mut st, &call.method);
        if let Some(Action::Hang(_)) = injected {
            record(&mut st, &call.method, None, None, &call.params, Err(-2));
        }
        injected
    };
    if let Some(Action::Hang(d)) = injected {
        tokio::time::sleep(d).await;
        return Err(Dropped);
    }
    let mut st = shared.state.lock().unwrap();
    match injected {
        Some(Action::DropBefore) => return Err(Dropped),
        Some(Action::Garbage) => {
            record(&mut st, &call.method, None, None, &call.params, Err(-1));
            return Ok(xml_response(
                "<html><body>502 proxy error: \u{0}garbage</methodResponse>".to_owned(),
            ));
        }
        Some(Action::HttpStatus(code)) => {
            record(
                &mut st,
                &call.method,
                None,
                None,
                &call.params,
                Err(-(code as i32)),
            );
            return Ok(Response::builder()
                .status(code)
                .header("Content-Type", "text/html")
                .body(Full::new(Bytes::from(format!(
                    "<html><body><h1>{code}</h1></body></html>"
                ))))
                .unwrap());
        }
        _ => {}
    }
    if let Some(Action::Fault(f)) = &injected {
        let f = f.clone();
        record(&mut st, &call.method, None, None, &call.params, Err(f.code));
        return Ok(xml_response(encode_fault_response(&f)));
    }
    if st.offline {
        return Ok(xml_response(encode_fault_response(&fault(
            1014,
            "server is offline",
        ))));
    }
    let r = dispatch(
        &shared,
        &mut st,
        &headers,
        &call.method,
        call.params.clone(),
        peer,
        path,
    );
    let text = match &r {
        Ok(v) => encode_response(v),
        Err(f) => encode_fault_response(f),
    };
    if let Some(Action::DropAfter) = injected {
        return Err(Dropped);
    }
    Ok(xml_response(text))
}

fn record(
    st: &mut State,
    method: &str,
    session: Option<i64>,
    callnum: Option<i64>,
    params: &[Value],
    outcome: Result<(), i32>,
) {
    st.calls.push(CallRecord {
        method: method.to_owned(),
        session,
        callnum,
        params: params.to_vec(),
        outcome,
    });
}

fn dispatch(
    shared: &Shared,
    st: &mut State,
    headers: &hyper::HeaderMap,
    method: &str,
    params: Vec<Value>,
    peer_user: Option<String>,
    path: String,
) -> Result<Value, Fault> {
    let (sid, uid, callnum) = match session_of(st, headers, method) {
        Ok(x) => x,
        Err(f) => {
            record(st, method, None, None, &params, Err(f.code));
            return Err(f);
        }
    };
    let ctx = Ctx {
        session: sid,
        user_id: uid,
        method: method.to_owned(),
        peer_user: peer_user.clone(),
        path: path.clone(),
    };
    let r = if method == "multiCall" || method == "system.multicall" {
        let calls = params
            .first()
            .and_then(|v| v.as_array().map(<[Value]>::to_vec))
            .unwrap_or_default();
        let mut out = Vec::new();
        for c in calls {
            let m = c
                .get("methodName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let p = c
                .get("params")
                .and_then(|v| v.as_array().map(<[Value]>::to_vec))
                .unwrap_or_default();
            let h = shared.methods.lock().unwrap().get(&m).cloned();
            let (a, kw) = decode_args(p);
            let one = match h {
                Some(h) => h(
                    st,
                    &Ctx {
                        session: sid,
                        user_id: uid,
                        method: m.clone(),
                        peer_user: peer_user.clone(),
                        path: path.clone(),
                    },
                    a,
                    kw,
                ),
                None => Err(fault(1000, format!("Invalid method: {m}"))),
            };
            out.push(match one {
                Ok(v) => Value::Array(vec![v]),
                Err(f) => f.to_value(),
            });
        }
        Ok(Value::Array(out))
    } else {
        let h = shared.methods.lock().unwrap().get(method).cloned();
        let (a, kw) = decode_args(params.clone());
        match h {
            Some(h) => h(st, &ctx, a, kw),
            None => Err(fault(1000, format!("Invalid method: {method}"))),
        }
    };
    // the call number is stored only when the call committed something
    if let (Some(sid), Some(c), Ok(_)) = (sid, callnum, &r) {
        if !READ_ONLY.contains(&method) {
            if let Some(x) = st.sessions.get_mut(&sid) {
                x.callnum = Some(c);
            }
        }
    }
    record(
        st,
        method,
        sid,
        callnum,
        &params,
        r.as_ref().map(|_| ()).map_err(|f| f.code),
    );
    r
}

async fn handle_upload(
    shared: Arc<Shared>,
    headers: hyper::HeaderMap,
    query: String,
    mut body: Incoming,
) -> Result<Resp, Dropped> {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let (path, injected, ctx) = {
        let mut st = shared.state.lock().unwrap();
        let injected = take_injection(&mut st, "rawUpload");
        if let Some(Action::DropBefore) = injected {
            return Err(Dropped);
        }
        let (sid, uid, callnum) = match session_of(&mut st, &headers, "rawUpload") {
            Ok(x) => x,
            Err(f) => return Ok(xml_response(encode_fault_response(&f))),
        };
        record(
            &mut st,
            "rawUpload",
            sid,
            callnum,
            &[Value::from(query.as_str())],
            Ok(()),
        );
        if uid.is_none() {
            return Ok(xml_response(encode_fault_response(&fault(
                1004,
                "you must be logged-in to upload a file",
            ))));
        }
        let ctx = Ctx {
            session: sid,
            user_id: uid,
            method: "rawUpload".into(),
            peer_user: None,
            path: String::new(),
        };
        let name = q.get("filename").cloned().unwrap_or_default();
        let dir = q.get("filepath").cloned().unwrap_or_default();
        let path = match st.upload_path(&ctx, &dir, &name, true) {
            Ok(p) => p,
            Err(f) => return Ok(xml_response(encode_fault_response(&f))),
        };
        (path, injected, ctx)
    };
    let _ = ctx;
    let verify = q.get("fileverify").cloned().unwrap_or_default();
    if verify != "adler32" && verify != "sha256" {
        // the hub calls get_verify_class(verify)() → fault 1 for an empty/unknown one
        return Ok(xml_response(encode_fault_response(&fault(
            1,
            "TypeError: 'NoneType' object is not callable",
        ))));
    }
    let overwrite = q.get("overwrite").is_some_and(|v| !v.is_empty());
    let offset: i64 = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if path.exists() && offset == 0 && !overwrite {
        return Ok(xml_response(encode_fault_response(&fault(
            1000,
            format!("upload path exists: {}", path.display()),
        ))));
    }
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let start = if offset == -1 {
        f.seek(SeekFrom::End(0)).unwrap()
    } else {
        f.set_len(offset as u64).unwrap();
        f.seek(SeekFrom::Start(offset as u64)).unwrap()
    };
    let limit = match injected {
        Some(Action::DropUploadAfter(n)) => Some(n),
        _ => None,
    };
    let mut size = 0usize;
    let mut a = Digest::new(&verify);
    use hyper::body::Body as _;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|_| Dropped)?;
        if let Ok(data) = frame.into_data() {
            let mut data: &[u8] = &data;
            if let Some(l) = limit {
                if size + data.len() >= l {
                    data = &data[..l - size];
                    f.write_all(data).unwrap();
                    return Err(Dropped);
                }
            }
            f.write_all(data).unwrap();
            a.update(data);
            size += data.len();
        }
    }
    if let Some(Action::DropAfter) = injected {
        return Err(Dropped);
    }
    Ok(xml_response(encode_response(&Value::struct_from([
        ("size", Value::Int(size as i64)),
        ("fileverify", Value::from(verify.as_str())),
        ("offset", Value::Int(start as i64)),
        ("hexdigest", Value::String(a.hex())),
    ]))))
}

/// Path of an uploaded file.
pub fn uploaded(hub: &FakeHub, rel: &str) -> PathBuf {
    hub.topdir().join("work").join(rel)
}

pub fn read_uploaded(hub: &FakeHub, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(uploaded(hub, rel)).ok()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// adler32 or sha256, as the hub's get_verify_class.
enum Digest {
    Adler(adler2::Adler32),
    Sha(Vec<u8>),
}

impl Digest {
    fn new(kind: &str) -> Digest {
        if kind == "sha256" {
            Digest::Sha(Vec::new())
        } else {
            Digest::Adler(adler2::Adler32::new())
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Digest::Adler(a) => a.write_slice(data),
            Digest::Sha(buf) => buf.extend_from_slice(data),
        }
    }
    fn hex(self) -> String {
        match self {
            Digest::Adler(a) => format!("{:08x}", a.checksum()),
            Digest::Sha(buf) => koji_adjutant::hub::Verify::Sha256.digest(&buf),
        }
    }
}
