//! An Envoy stand-in for the wxnotify filter's tests.
//!
//! [`Proxy`] loads the filter (`wxnotify_envoy.wasm`) in `proxy-wasm-host`, a Proxy-Wasm ABI
//! v0.2.1 host that is not ours, the way Envoy runs it: one guest per worker thread, all of them
//! sharing one shared-data store (one VM id), each request a stream context created under the
//! plugin's root. The host runs no network and no timers of its own, so this crate adds what
//! Envoy would: every `dispatch_http_call` is sent for real to the cluster's address (the
//! WeChat sandbox, a test backend) and its answer — or its failure after the call's timeout —
//! delivered with `on_http_call_response` to the context that made it; `on_tick` is called at
//! the period the plugin asked for.
//!
//! [`Sandbox`] runs `wxnotify sandbox` (the WeChat stand-in) and [`Backend`] records what the
//! filter hands on.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proxy_wasm_host::abi::v0_2_1::types::{Action, BufferType, LogLevel, MapType, Status};
use proxy_wasm_host::abi::v0_2_1::{
    Access, CallScope, CalloutId, Callouts, ContextId, Guest, GuestError, HeaderPairs, Host,
    HttpCall, HttpCallRefusal, HttpCallResponse, InMemoryStore, InMemoryStoreLimits, Invocation,
    LocalResponse, LogContext, LogSink, PluginConfig, Started, StreamKind, StreamState, VmServices,
};
use proxy_wasm_host::{Buffer, Engine, HeaderMap, Limits, Module, VecHeaderMap};
use serde_json::Value;

/// How long a test waits for any one answer before calling the filter stuck.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The compiled filter, shared by every proxy of a test binary (compiling takes seconds).
fn compiled() -> &'static (Engine, Module) {
    static COMPILED: OnceLock<(Engine, Module)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let path = filter_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "reading the filter {} ({e}); build it with gateways/envoy/test.sh",
                path.display()
            )
        });
        let engine = Engine::new().expect("a wasmtime engine");
        let module = Module::new(&engine, &bytes).expect("the filter compiles");
        (engine, module)
    })
}

/// `WXNOTIFY_ENVOY_FILTER`, or where `gateways/envoy/test.sh` builds the filter.
pub fn filter_path() -> PathBuf {
    std::env::var_os("WXNOTIFY_ENVOY_FILTER").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../target/wasm32-wasip1/release/wxnotify_envoy.wasm")
        },
        PathBuf::from,
    )
}

/// A request as a client sends it to the proxy.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn get(path_and_query: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path_and_query: path_and_query.into(),
            ..HttpRequest::default()
        }
    }

    pub fn post(path_and_query: &str, body: impl Into<Vec<u8>>) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path_and_query: path_and_query.into(),
            body: body.into(),
            ..HttpRequest::default()
        }
    }

    pub fn json(path: &str, body: &Value) -> HttpRequest {
        HttpRequest::post(path, body.to_string()).header("content-type", "application/json")
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the client got back.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The filter let the request continue to the route's upstream (this proxy has none, so
    /// it answers 404 itself).
    pub passed_through: bool,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn local(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            passed_through: false,
        }
    }
}

/// One callout the filter made, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a proxy is set up.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Worker threads, each with its own guest (Envoy's `--concurrency`).
    pub workers: usize,
    /// The plugin configuration, as Envoy's `configuration` of the wasm filter.
    pub plugin_config: Value,
    /// Cluster name → base URL (`http://127.0.0.1:port`).
    pub clusters: Vec<(String, String)>,
    /// The VM's environment variables (Envoy: `vm_config.environment_variables`).
    pub environment: Vec<(String, String)>,
}

/// What an upstream answered a callout.
struct UpstreamAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

enum Event {
    Request(HttpRequest, Sender<HttpResponse>),
    Answer {
        context: ContextId,
        callout: CalloutId,
        answer: Option<UpstreamAnswer>,
    },
    Stop,
}

/// The proxy: workers running the filter, and what they logged and called.
pub struct Proxy {
    workers: Vec<(Sender<Event>, Option<JoinHandle<()>>)>,
    next_worker: AtomicUsize,
    logs: Arc<Mutex<Vec<String>>>,
    callouts: Arc<Mutex<Vec<Callout>>>,
}

impl Proxy {
    /// Starts the workers and configures the plugin on each.
    ///
    /// # Errors
    ///
    /// When the plugin refuses its configuration (or does not load): what it logged.
    pub fn start(options: &ProxyOptions) -> Result<Proxy, String> {
        let (engine, module) = compiled();
        let host = Arc::new(Host::new(engine).map_err(|e| format!("linking the ABI: {e}"))?);
        let store = Arc::new(
            InMemoryStore::new().with_limits(InMemoryStoreLimits::new().with_keys(1_000_000)),
        );
        let logs = Arc::new(Mutex::new(Vec::new()));
        let callouts = Arc::new(Mutex::new(Vec::new()));
        let clusters: Arc<HashMap<String, String>> =
            Arc::new(options.clusters.iter().cloned().collect());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut workers = Vec::new();
        for worker in 0..options.workers {
            let (events, inbox) = mpsc::channel();
            let services = VmServices::new(Arc::new(Lines(logs.clone())))
                .with_vm_id("wxnotify")
                .with_environment(
                    options
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                        .collect(),
                )
                .with_log_level(LogLevel::Debug)
                .with_shared(store.clone())
                .with_callouts(Arc::new(Upstreams {
                    clusters: clusters.clone(),
                    agent: agent.clone(),
                    events: events.clone(),
                    seen: callouts.clone(),
                }));
            let configuration = options.plugin_config.to_string();
            let (started, start_outcome) = mpsc::channel();
            let host = host.clone();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-worker-{worker}"))
                .spawn(move || {
                    let plugin = PluginConfig::new()
                        .with_name("wxnotify")
                        .with_root_id("wxnotify")
                        .with_configuration(configuration);
                    let booted = Guest::new(&host, module, services, &Limits::default())
                        .and_then(|mut guest| Ok((guest.start(plugin)?, guest)));
                    match booted {
                        Ok((Started::Serving(root), guest)) => {
                            let _ = started.send(Ok(()));
                            Worker::new(guest, root).serve(&inbox);
                        }
                        Ok((refused, _)) => {
                            let _ = started
                                .send(Err(format!("the plugin refused to start: {refused:?}")));
                        }
                        Err(error) => {
                            let _ = started.send(Err(format!("the filter did not load: {error}")));
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            start_outcome
                .recv()
                .map_err(|_| "a worker died while starting".to_owned())?
                .map_err(|refusal| {
                    let logged = logs.lock().unwrap().join("\n");
                    format!("{refusal}; it logged:\n{logged}")
                })?;
            workers.push((events, Some(thread)));
        }
        Ok(Proxy {
            workers,
            next_worker: AtomicUsize::new(0),
            logs,
            callouts,
        })
    }

    /// Sends `request` to the next worker; the answer arrives on the receiver.
    pub fn send(&self, request: HttpRequest) -> Receiver<HttpResponse> {
        let (reply, answer) = mpsc::channel();
        let worker = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let _ = self.workers[worker].0.send(Event::Request(request, reply));
        answer
    }

    /// Sends `request` and waits for its answer.
    pub fn request(&self, request: HttpRequest) -> HttpResponse {
        let what = format!("{} {}", request.method, request.path_and_query);
        self.send(request)
            .recv_timeout(ANSWER_WITHIN)
            .unwrap_or_else(|_| panic!("no answer to {what} within {ANSWER_WITHIN:?}"))
    }

    /// Every line the plugin logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Every callout the plugin made so far.
    pub fn callouts(&self) -> Vec<Callout> {
        self.callouts.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for (events, _) in &self.workers {
            let _ = events.send(Event::Stop);
        }
        for (_, thread) in &mut self.workers {
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

struct Lines(Arc<Mutex<Vec<String>>>);

impl LogSink for Lines {
    fn log(&self, _: LogContext<'_>, level: LogLevel, message: &[u8]) {
        let line = format!("{level:?} {}", String::from_utf8_lossy(message));
        if std::env::var_os("WXNOTIFY_HARNESS_LOG").is_some() {
            eprintln!("{line}");
        }
        self.0.lock().unwrap().push(line);
    }
}

/// The proxy's side of `dispatch_http_call`: each call is sent on its own thread (the guest
/// must not wait) and its answer queued to the worker that owns the calling context.
struct Upstreams {
    clusters: Arc<HashMap<String, String>>,
    agent: ureq::Agent,
    events: Sender<Event>,
    seen: Arc<Mutex<Vec<Callout>>>,
}

impl Callouts for Upstreams {
    fn http_call(
        &self,
        call: Invocation,
        callout: CalloutId,
        request: HttpCall<'_>,
    ) -> Result<(), HttpCallRefusal> {
        let cluster = String::from_utf8_lossy(&request.upstream).into_owned();
        let base = self
            .clusters
            .get(&cluster)
            .ok_or(HttpCallRefusal::UnknownUpstream)?
            .clone();
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let seen = Callout {
            cluster,
            headers: headers.clone(),
            body: request.body.to_vec(),
            timeout: request.timeout,
        };
        let method = seen.header(":method").unwrap_or("GET").to_owned();
        let url = format!("{base}{}", seen.header(":path").unwrap_or("/"));
        self.seen.lock().unwrap().push(seen);
        let (agent, events, context) = (self.agent.clone(), self.events.clone(), call.context);
        let (body, timeout) = (request.body.into_owned(), request.timeout);
        std::thread::spawn(move || {
            let answer = forward(&agent, &method, &url, &headers, body, timeout);
            let _ = events.send(Event::Answer {
                context,
                callout,
                answer,
            });
        });
        Ok(())
    }
}

/// Sends one callout; `None` when no answer came within `timeout` (as Envoy reports it: a
/// response with no headers).
fn forward(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Option<UpstreamAnswer> {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        // Pseudo-headers become the request line and Host; ureq frames the body itself.
        if !name.starts_with(':') && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let request = request.body(body).ok()?;
    let request = agent
        .configure_request(request)
        .timeout_global(Some(timeout))
        .build();
    let mut response = agent.run(request).ok()?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response.body_mut().read_to_vec().ok()?;
    Some(UpstreamAnswer {
        status,
        headers,
        body,
    })
}

/// One request in flight, as the guest sees it.
#[derive(Default)]
struct Stream {
    request_headers: VecHeaderMap,
    request_body: Vec<u8>,
    response_headers: VecHeaderMap,
    local_response: Option<LocalResponse<'static>>,
    /// Where the client waits for the answer.
    reply: Option<Sender<HttpResponse>>,
}

/// Every request of a worker, found by the context the guest acts for: a guest may act for a
/// request from another callback (a tick) after `proxy_set_effective_context`.
#[derive(Default)]
struct Streams {
    by_context: HashMap<ContextId, Stream>,
}

impl Streams {
    fn stream(&mut self, call: Invocation) -> Result<&mut Stream, Status> {
        self.by_context
            .get_mut(&call.context)
            .ok_or(Status::NotFound)
    }
}

impl StreamState for Streams {
    fn header_map(
        &mut self,
        call: Invocation,
        _: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        let stream = self.stream(call)?;
        match map {
            MapType::HttpRequestHeaders => Ok(&mut stream.request_headers),
            MapType::HttpResponseHeaders => Ok(&mut stream.response_headers),
            _ => Err(Status::NotFound),
        }
    }

    fn buffer(
        &mut self,
        call: Invocation,
        _: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        let stream = self.stream(call)?;
        match buffer {
            BufferType::HttpRequestBody => Ok(&mut stream.request_body),
            _ => Err(Status::NotFound),
        }
    }

    fn send_local_response(
        &mut self,
        call: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        let stream = self.stream(call)?;
        if stream.local_response.is_some() {
            // Envoy answers a request once.
            return Err(Status::BadArgument);
        }
        stream.local_response = Some(response.into_owned());
        Ok(())
    }
}

/// One worker thread: its guest and the requests it holds.
struct Worker {
    guest: Guest,
    root: ContextId,
    streams: Option<Streams>,
}

impl Worker {
    fn new(guest: Guest, root: ContextId) -> Worker {
        Worker {
            guest,
            root,
            streams: Some(Streams::default()),
        }
    }

    fn serve(mut self, inbox: &Receiver<Event>) {
        let mut next_tick = Instant::now();
        loop {
            let period = self.guest.tick_period(self.root);
            let event = match period {
                Some(_) => inbox.recv_timeout(next_tick.saturating_duration_since(Instant::now())),
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Event::Request(request, reply)) => self.start(request, reply),
                Ok(Event::Answer {
                    context,
                    callout,
                    answer,
                }) => self.deliver(context, callout, answer),
                Err(RecvTimeoutError::Timeout) => {
                    let root = self.root;
                    self.run(|scope| scope.on_tick(root).map(|()| None));
                    next_tick = Instant::now() + period.unwrap_or_default();
                }
            }
        }
    }

    /// Runs callbacks with the requests lent to the guest, then answers every request the
    /// guest answered (or, for `Some(context)`, let through) and ends its context.
    fn run(
        &mut self,
        callbacks: impl FnOnce(&mut CallScope<'_, Streams>) -> Result<Option<ContextId>, GuestError>,
    ) {
        let streams = self
            .streams
            .take()
            .expect("streams are home between callbacks");
        let mut scope = self.guest.enter(streams);
        let outcome = callbacks(&mut scope);
        let mut finished: Vec<(ContextId, HttpResponse)> = Vec::new();
        {
            let streams = scope.stream_mut();
            let passed = outcome.as_ref().ok().copied().flatten();
            for (context, stream) in &mut streams.by_context {
                if let Some(response) = stream.local_response.take() {
                    finished.push((*context, local_response(response)));
                } else if passed == Some(*context) {
                    finished.push((*context, passed_through()));
                }
            }
            if let Err(error) = &outcome {
                for context in streams.by_context.keys() {
                    let failed = HttpResponse::local(500, &format!("the filter failed: {error}"));
                    finished.push((*context, failed));
                }
            }
        }
        for (context, response) in finished {
            let stream = scope.stream_mut().by_context.remove(&context);
            if let Some(reply) = stream.and_then(|stream| stream.reply) {
                let _ = reply.send(response);
            }
            if outcome.is_ok() {
                let _ = scope.on_done(context);
                let _ = scope.on_log(context);
                let _ = scope.on_delete(context);
            }
        }
        self.streams = Some(scope.finish());
    }

    fn start(&mut self, request: HttpRequest, reply: Sender<HttpResponse>) {
        let root = self.root;
        let mut headers = vec![
            (b":method".to_vec(), request.method.into_bytes()),
            (b":path".to_vec(), request.path_and_query.into_bytes()),
            (b":authority".to_vec(), b"wxnotify.test".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
        ];
        headers.extend(
            request
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.into_bytes())),
        );
        let has_length = headers.iter().any(|(k, _)| k == b"content-length");
        if !request.body.is_empty() && !has_length {
            headers.push((
                b"content-length".to_vec(),
                request.body.len().to_string().into_bytes(),
            ));
        }
        let body = request.body;
        self.run(|scope| {
            let context = scope.on_context_create(Some(root))?;
            scope.expect_stream_kind(context, StreamKind::Http)?;
            let header_count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
            let body_size = u32::try_from(body.len()).unwrap_or(u32::MAX);
            let end_of_stream = body.is_empty();
            scope.stream_mut().by_context.insert(
                context,
                Stream {
                    request_headers: headers.into(),
                    request_body: body,
                    reply: Some(reply),
                    ..Stream::default()
                },
            );
            let mut action = scope.on_request_headers(context, header_count, end_of_stream)?;
            if answered(scope, context) {
                return Ok(None);
            }
            if !end_of_stream {
                action = scope.on_request_body(context, body_size, true)?;
            }
            Ok((action == Action::Continue && !answered(scope, context)).then_some(context))
        });
    }

    fn deliver(&mut self, context: ContextId, callout: CalloutId, answer: Option<UpstreamAnswer>) {
        self.run(|scope| {
            let response =
                match answer {
                    Some(UpstreamAnswer {
                        status,
                        headers,
                        body,
                    }) => {
                        let mut pairs: HeaderPairs<'static> = vec![(
                            Cow::Borrowed(b":status"),
                            Cow::Owned(status.to_string().into_bytes()),
                        )];
                        pairs.extend(headers.into_iter().map(|(k, v)| {
                            (Cow::Owned(k.into_bytes()), Cow::Owned(v.into_bytes()))
                        }));
                        HttpCallResponse::received(pairs).with_body(body)
                    }
                    None => HttpCallResponse::failed(),
                };
            match scope.on_http_call_response(context, callout, response) {
                // The request is gone (answered, or its client left): nothing waits for this.
                Err(GuestError::Callout { .. }) => Ok(None),
                other => other.map(|()| None),
            }
        });
    }
}

fn answered(scope: &mut CallScope<'_, Streams>, context: ContextId) -> bool {
    scope
        .stream_mut()
        .by_context
        .get(&context)
        .is_some_and(|stream| stream.local_response.is_some())
}

fn local_response(response: LocalResponse<'static>) -> HttpResponse {
    HttpResponse {
        status: u16::try_from(response.status_code).unwrap_or(500),
        headers: response
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect(),
        body: response.body.into_owned(),
        passed_through: false,
    }
}

fn passed_through() -> HttpResponse {
    HttpResponse {
        passed_through: true,
        ..HttpResponse::local(404, "passed through the filter: this proxy has no upstream")
    }
}

/// `wxnotify sandbox`: WeChat's API with its own users, tokens and messages.
pub struct Sandbox {
    child: Child,
    pub base_url: String,
    pub mini_appid: String,
    pub mini_secret: String,
    pub oa_appid: String,
    pub oa_secret: String,
    agent: ureq::Agent,
}

impl Sandbox {
    /// Starts `WXNOTIFY_BIN` (default: the workspace's `target/debug/wxnotify`).
    pub fn start() -> Sandbox {
        let binary = std::env::var_os("WXNOTIFY_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../target/debug/wxnotify"),
            PathBuf::from,
        );
        let mut child = Command::new(&binary)
            .args(["--json", "sandbox", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} ({e})", binary.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the sandbox's first line is not JSON ({e}): {line}"));
        let field = |name: &str| info[name].as_str().unwrap().to_owned();
        Sandbox {
            base_url: field("base_url"),
            mini_appid: field("mini_appid"),
            mini_secret: field("mini_secret"),
            oa_appid: field("oa_appid"),
            oa_secret: field("oa_secret"),
            child,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }

    /// A call of the sandbox's admin API (`/sandbox{path}`).
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/sandbox{path}", self.base_url);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(body.map(Value::to_string).unwrap_or_default())
            .unwrap();
        let mut response = self.agent.run(request).unwrap();
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(
            status.is_success(),
            "sandbox {method} {path}: {status} {text}"
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// Token fetches of `appid` so far (classic and stable).
    pub fn token_fetches(&self, appid: &str) -> u64 {
        let fetches = &self.admin("GET", "/stats", None)["token_fetches"][appid];
        fetches["classic"].as_u64().unwrap_or(0) + fetches["stable"].as_u64().unwrap_or(0)
    }

    /// The `config` of a plugin on the sandbox's accounts, plus `extra` keys.
    pub fn plugin_config(&self, extra: &[(&str, &str)]) -> serde_json::Map<String, Value> {
        let mut config = serde_json::Map::new();
        for (key, value) in [
            ("api_base", self.base_url.as_str()),
            ("mini_appid", &self.mini_appid),
            ("mini_secret", &self.mini_secret),
            ("oa_appid", &self.oa_appid),
            ("oa_secret", &self.oa_secret),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            config.insert(key.to_owned(), value.into());
        }
        config
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend behind Envoy: records the events the filter hands on, answering each with the
/// status last set.
pub struct Backend {
    server: Arc<tiny_http::Server>,
    pub base_url: String,
    events: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start() -> Backend {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let base_url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let thread = {
            let (server, events, status) = (server.clone(), events.clone(), status.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let answer = status.load(Ordering::SeqCst);
                    if answer == 200 {
                        let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        events.lock().unwrap().push(event);
                    }
                    let _ = request.respond(tiny_http::Response::empty(answer));
                }
            })
        };
        Backend {
            server,
            base_url,
            events,
            status,
            thread: Some(thread),
        }
    }

    /// The events accepted so far (while answering 200).
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Answers every later event with `status`.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
