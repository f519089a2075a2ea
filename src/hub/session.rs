//! Hub sessions: login (password or client certificate), the session headers with a
//! strictly increasing call number, one call at a time per session, exclusivity,
//! subsessions, renewal after `AuthExpired`, kojid's retries, multicalls and the raw
//! upload request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};
use url::Url;

use super::retry::RetryPolicy;
use super::transport::{HubTransport, TransportError};
use super::HubError;
use crate::xmlrpc::{decode_response, encode_args, encode_call, Fault, FaultKind, Struct, Value};

/// How a session authenticates (and re-authenticates when it expires).
#[derive(Clone)]
pub enum AuthMethod {
    /// No login (anonymous calls only).
    None,
    /// `login(user, password)`.
    Password {
        /// The user (the build host's name).
        user: String,
        /// The password.
        password: String,
    },
    /// `sslLogin()` over TLS with the transport's client certificate; posted to
    /// `<server>/ssllogin`.
    Certificate,
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::None => f.write_str("None"),
            AuthMethod::Password { user, .. } => write!(f, "Password({user})"),
            AuthMethod::Certificate => f.write_str("Certificate"),
        }
    }
}

/// What `login`/`sslLogin`/`subsession` return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// `session-id`.
    pub id: i64,
    /// `session-key`.
    pub key: String,
    /// `header-auth`: send the session in headers (hubs ≥ 1.30) rather than the URL.
    pub header_auth: bool,
}

impl SessionInfo {
    fn from_value(method: &str, v: &Value) -> Result<SessionInfo, HubError> {
        let id = v
            .get("session-id")
            .and_then(Value::as_i64)
            .ok_or_else(|| HubError::protocol(method, format!("no session-id in {v}")))?;
        let key = v
            .get("session-key")
            .and_then(Value::as_str)
            .ok_or_else(|| HubError::protocol(method, "no session-key"))?
            .to_owned();
        Ok(SessionInfo {
            id,
            key,
            header_auth: v.get("header-auth").is_some_and(Value::truthy),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    sinfo: Option<SessionInfo>,
    /// The next call number. Never goes back, also across renewals: the hub keeps
    /// the last call number of a session id and refuses lower ones.
    callnum: u64,
    exclusive: bool,
}

struct Inner {
    transport: Arc<HubTransport>,
    base: Url,
    auth: AuthMethod,
    retry: RetryPolicy,
    callnum_compat: bool,
    subsession: bool,
    state: tokio::sync::Mutex<State>,
    snapshot: std::sync::Mutex<Option<SessionInfo>>,
}

/// A hub session. Cheap to clone; clones share the session. Calls on one session are
/// serialized (the hub requires call numbers to increase), so concurrent actors
/// (tasks) use their own [`HubSession::subsession`].
#[derive(Clone)]
pub struct HubSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HubSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSession")
            .field("server", &self.inner.base.as_str())
            .field("session_id", &self.session_id())
            .field("subsession", &self.inner.subsession)
            .finish()
    }
}

/// One request, ready to (re)send.
struct Prepared {
    url: Url,
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    body: Bytes,
    callnum: Option<u64>,
}

impl HubSession {
    /// A session that is not logged in yet. `callnum_compat` also sends the call
    /// number as `Koji-Callnum`, the header the 1.35 hub reads.
    pub fn new(
        transport: Arc<HubTransport>,
        auth: AuthMethod,
        retry: RetryPolicy,
        callnum_compat: bool,
    ) -> HubSession {
        let mut base = transport.server().clone();
        if matches!(auth, AuthMethod::Certificate) && base.scheme() == "http" {
            // koji's ssl_login forces https on the same host and path
            let _ = base.set_scheme("https");
        }
        HubSession {
            inner: Arc::new(Inner {
                transport,
                base,
                auth,
                retry,
                callnum_compat,
                subsession: false,
                state: tokio::sync::Mutex::new(State::default()),
                snapshot: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The transport (shared by all sessions of a daemon).
    pub fn transport(&self) -> &Arc<HubTransport> {
        &self.inner.transport
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The session id, when logged in.
    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .snapshot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.id))
    }

    /// Logged in?
    pub fn is_logged_in(&self) -> bool {
        self.session_id().is_some()
    }

    /// Is this a subsession?
    pub fn is_subsession(&self) -> bool {
        self.inner.subsession
    }

    fn set_sinfo(&self, st: &mut State, sinfo: Option<SessionInfo>) {
        if let Ok(mut s) = self.inner.snapshot.lock() {
            s.clone_from(&sinfo);
        }
        st.sinfo = sinfo;
    }

    /// Log in with the configured method. Call numbers start at 0.
    pub async fn login(&self) -> Result<(), HubError> {
        let mut st = self.inner.state.lock().await;
        let sinfo = self.auth_call(&mut st, false).await?;
        self.set_sinfo(&mut st, Some(sinfo));
        st.callnum = 0;
        info!(session = self.session_id(), auth = ?self.inner.auth, "logged in to the hub");
        Ok(())
    }

    /// The login call itself (fresh or renewal).
    async fn auth_call(&self, st: &mut State, renew: bool) -> Result<SessionInfo, HubError> {
        let mut kwargs = Struct::new();
        if renew {
            // Renew without `exclusive`: the hub keeps the exclusive flag of the
            // session row, and asking again would fail with AuthLockError
            // (notes §1.7).
            kwargs.insert("renew".into(), Value::Bool(true));
        }
        let (method, args) = match &self.inner.auth {
            AuthMethod::None => {
                return Err(HubError::AuthSetup(
                    "no credentials configured: set cert, or user and password".into(),
                ))
            }
            AuthMethod::Password { user, password } => (
                "login",
                vec![Value::from(user.as_str()), Value::from(password.as_str())],
            ),
            AuthMethod::Certificate => ("sslLogin", vec![]),
        };
        let timeout = self.inner.transport.options().auth_timeout;
        let v = self
            .call_locked(st, method, encode_args(args, kwargs), Some(timeout))
            .await?;
        if v.is_nil() {
            return Err(HubError::Fault {
                method: method.into(),
                fault: Fault::of(FaultKind::Auth, "unable to obtain a session"),
            });
        }
        SessionInfo::from_value(method, &v)
    }

    /// `exclusiveSession(force=…)`: make this the only usable session of the user.
    pub async fn exclusive_session(&self, force: bool) -> Result<(), HubError> {
        let mut kw = Struct::new();
        kw.insert("force".into(), Value::Bool(force));
        self.call_kw("exclusiveSession", vec![], kw).await?;
        self.inner.state.lock().await.exclusive = true;
        Ok(())
    }

    /// A new subsession of this session (same user; exclusive while the master is).
    pub async fn subsession(&self) -> Result<HubSession, HubError> {
        let v = self.call("subsession", vec![]).await?;
        let sinfo = SessionInfo::from_value("subsession", &v)?;
        let sub = HubSession {
            inner: Arc::new(Inner {
                transport: self.inner.transport.clone(),
                base: self.inner.base.clone(),
                auth: self.inner.auth.clone(),
                retry: self.inner.retry,
                callnum_compat: self.inner.callnum_compat,
                subsession: true,
                state: tokio::sync::Mutex::new(State::default()),
                snapshot: std::sync::Mutex::new(None),
            }),
        };
        {
            let mut st = sub.inner.state.lock().await;
            sub.set_sinfo(&mut st, Some(sinfo));
        }
        debug!(
            master = self.session_id(),
            sub = sub.session_id(),
            "subsession created"
        );
        Ok(sub)
    }

    /// `logout()`: closes this session and its subsessions. Sent once, without
    /// retries; an already expired session is fine.
    pub async fn logout(&self) -> Result<(), HubError> {
        let mut st = self.inner.state.lock().await;
        if st.sinfo.is_none() {
            return Ok(());
        }
        let prep = self.prepare(&mut st, "logout", encode_call("logout", &[]).into(), None);
        let r = self
            .send(&prep, "logout", RetryPolicy::none(), None, true)
            .await;
        self.set_sinfo(&mut st, None);
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.is_fault(FaultKind::AuthExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `logoutChild(session_id)`: close one of our subsessions.
    pub async fn logout_child(&self, session_id: i64) -> Result<(), HubError> {
        self.call("logoutChild", vec![Value::Int(session_id)])
            .await
            .map(|_| ())
    }

    /// Call `method` with positional args.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, HubError> {
        self.call_kw(method, args, Struct::new()).await
    }

    /// Call `method` with positional and keyword args (`__starstar`). An
    /// `AuthExpired` fault renews the session and replays the call once.
    pub async fn call_kw(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Struct,
    ) -> Result<Value, HubError> {
        let params = encode_args(args, kwargs);
        let mut st = self.inner.state.lock().await;
        match self
            .call_locked(&mut st, method, params.clone(), None)
            .await
        {
            Err(e) if e.is_fault(FaultKind::AuthExpired) && self.can_renew(&st) => {
                warn!(
                    method,
                    session = self.session_id(),
                    "session expired; renewing"
                );
                self.renew_locked(&mut st).await?;
                self.call_locked(&mut st, method, params, None).await
            }
            r => r,
        }
    }

    fn can_renew(&self, st: &State) -> bool {
        st.sinfo.is_some() && !matches!(self.inner.auth, AuthMethod::None)
    }

    async fn renew_locked(&self, st: &mut State) -> Result<(), HubError> {
        let sinfo = self.auth_call(st, true).await?;
        if st.sinfo.as_ref().is_some_and(|old| old.id != sinfo.id) {
            // A hub that issued a new session: its call numbers start afresh.
            st.callnum = 0;
        }
        self.set_sinfo(st, Some(sinfo));
        info!(session = self.session_id(), "session renewed");
        Ok(())
    }

    /// `multiCall`: several calls in one request (one call number, one hub
    /// transaction). One entry per call: its result, or its fault.
    pub async fn multicall(
        &self,
        calls: Vec<(String, Vec<Value>, Struct)>,
    ) -> Result<Vec<Result<Value, Fault>>, HubError> {
        let n = calls.len();
        let list: Vec<Value> = calls
            .into_iter()
            .map(|(m, a, k)| {
                let mut s = Struct::new();
                s.insert("methodName".into(), Value::String(m));
                s.insert("params".into(), Value::Array(encode_args(a, k)));
                Value::Struct(s)
            })
            .collect();
        let v = self.call("multiCall", vec![Value::Array(list)]).await?;
        let arr = match v {
            Value::Array(a) if a.len() == n => a,
            other => {
                return Err(HubError::protocol(
                    "multiCall",
                    format!("expected {n} results, got {other}"),
                ))
            }
        };
        arr.into_iter()
            .map(|e| match e {
                Value::Array(mut one) if one.len() == 1 => Ok(Ok(one.pop().unwrap_or_default())),
                Value::Struct(_) => Fault::from_value(&e)
                    .map(Err)
                    .ok_or_else(|| HubError::protocol("multiCall", format!("bad entry {e}"))),
                other => Err(HubError::protocol(
                    "multiCall",
                    format!("bad entry {other}"),
                )),
            })
            .collect()
    }

    /// One raw upload request (`application/octet-stream` with the chunk as body):
    /// returns the hub's `{size, fileverify, offset, hexdigest}`.
    pub async fn raw_upload(
        &self,
        chunk: Bytes,
        offset: i64,
        path: &str,
        name: &str,
        verify: &str,
        overwrite: bool,
    ) -> Result<Value, HubError> {
        let mut query = vec![
            ("filename".to_owned(), name.to_owned()),
            ("filepath".to_owned(), path.to_owned()),
            ("fileverify".to_owned(), verify.to_owned()),
            ("offset".to_owned(), offset.to_string()),
        ];
        if overwrite {
            query.push(("overwrite".into(), "1".into()));
        }
        let mut st = self.inner.state.lock().await;
        if st.sinfo.is_none() {
            return Err(HubError::NotLoggedIn {
                method: "rawUpload".into(),
            });
        }
        let prep = self.prepare(&mut st, "rawUpload", chunk, Some(query));
        let policy = self.inner.retry;
        match self.send(&prep, "rawUpload", policy, None, true).await {
            Err(e) if e.is_fault(FaultKind::AuthExpired) && self.can_renew(&st) => {
                self.renew_locked(&mut st).await?;
                let prep = self.prepare(
                    &mut st,
                    "rawUpload",
                    prep.body.clone(),
                    Some(prep_query(&prep)),
                );
                self.send(&prep, "rawUpload", policy, None, true).await
            }
            r => r,
        }
    }

    async fn call_locked(
        &self,
        st: &mut State,
        method: &str,
        params: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, HubError> {
        let body = Bytes::from(encode_call(method, &params));
        let prep = self.prepare(st, method, body, None);
        let logged_in = st.sinfo.is_some();
        self.send(&prep, method, self.inner.retry, timeout, logged_in)
            .await
    }

    fn prepare(
        &self,
        st: &mut State,
        method: &str,
        body: Bytes,
        upload: Option<Vec<(String, String)>>,
    ) -> Prepared {
        let mut url = self.inner.base.clone();
        if method == "sslLogin" {
            let p = format!("{}/ssllogin", url.path().trim_end_matches('/'));
            url.set_path(&p);
        }
        let mut headers = Vec::new();
        let mut query: Vec<(String, String)> = upload.clone().unwrap_or_default();
        let mut callnum = None;
        if let Some(s) = &st.sinfo {
            let n = st.callnum;
            st.callnum += 1;
            callnum = Some(n);
            if s.header_auth {
                headers.push(("Koji-Session-Id", s.id.to_string()));
                headers.push(("Koji-Session-Key", s.key.clone()));
                headers.push(("Koji-Session-Callnum", n.to_string()));
                if self.inner.callnum_compat {
                    headers.push(("Koji-Callnum", n.to_string()));
                }
            } else {
                query.push(("session-id".into(), s.id.to_string()));
                query.push(("session-key".into(), s.key.clone()));
                query.push(("callnum".into(), n.to_string()));
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let content_type = if upload.is_some() {
            "application/octet-stream"
        } else {
            "text/xml"
        };
        Prepared {
            url,
            headers,
            content_type,
            body,
            callnum,
        }
    }

    /// Send with kojid's retry rules (module [`super::retry`]).
    async fn send(
        &self,
        prep: &Prepared,
        method: &str,
        policy: RetryPolicy,
        timeout: Option<Duration>,
        logged_in: bool,
    ) -> Result<Value, HubError> {
        let timeout = timeout.unwrap_or(self.inner.transport.options().timeout);
        let mut tries: u32 = 0;
        let mut sent: u32 = 0;
        loop {
            sent += 1;
            let mut r = self
                .inner
                .transport
                .post(
                    &prep.url,
                    &prep.headers,
                    prep.content_type,
                    prep.body.clone(),
                    timeout,
                )
                .await;
            if let Err(e) = &r {
                if e.is_connection_reset() {
                    debug!(method, error = %e, "connection error; retrying once on a new connection");
                    sent += 1;
                    r = self
                        .inner
                        .transport
                        .post(
                            &prep.url,
                            &prep.headers,
                            prep.content_type,
                            prep.body.clone(),
                            timeout,
                        )
                        .await;
                }
            }
            let err = match r {
                Ok(body) => match decode_response(&body) {
                    Ok(resp) => match resp.into_result() {
                        Ok(v) => return Ok(v),
                        Err(fault) => {
                            let kind = fault.kind();
                            if kind == FaultKind::ServerOffline && policy.offline_retry {
                                warn!(
                                    method,
                                    "hub offline ({}); retrying in {:?}",
                                    fault.string,
                                    policy.offline_retry_interval
                                );
                                tokio::time::sleep(policy.offline_retry_interval).await;
                                tries = 0;
                                continue;
                            }
                            if kind == FaultKind::Retry && sent > 1 {
                                return Err(HubError::TookEffect {
                                    method: method.into(),
                                    fault,
                                });
                            }
                            return Err(HubError::Fault {
                                method: method.into(),
                                fault,
                            });
                        }
                    },
                    Err(source) => HubError::Decode {
                        method: method.into(),
                        source,
                    },
                },
                Err(source) => {
                    if source.is_certificate() {
                        return Err(HubError::Transport {
                            method: method.into(),
                            source,
                        });
                    }
                    HubError::Transport {
                        method: method.into(),
                        source,
                    }
                }
            };
            if !logged_in && !policy.anon_retry {
                return Err(err);
            }
            if tries >= policy.max_retries {
                return Err(err);
            }
            tries += 1;
            warn!(
                "Try #{tries} for call {} ({method}) failed: {err}",
                prep.callnum.map_or("-".to_string(), |n| n.to_string())
            );
            tokio::time::sleep(policy.delay_before(tries)).await;
        }
    }
}

fn prep_query(prep: &Prepared) -> Vec<(String, String)> {
    prep.url
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "session-id" | "session-key" | "callnum"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether an error means "the hub could not be reached" rather than "the hub said no".
pub fn is_unreachable(e: &HubError) -> bool {
    matches!(
        e,
        HubError::Transport {
            source: TransportError::Connect { .. }
                | TransportError::Timeout { .. }
                | TransportError::Broken { .. },
            ..
        }
    )
}
