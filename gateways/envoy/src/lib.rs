//! wxnotify as a Proxy-Wasm HTTP filter (ABI v0.2.1: Envoy, Istio, APISIX, MOSN).
//!
//! The same WeChat logic as the component, `wxnotify-core`, on a host whose I/O answers
//! through callbacks: this crate is the adapter. `config` reads the plugin configuration,
//! `proxy_env` implements the core's `Env` over `dispatch_http_call` and shared data,
//! `runtime` keeps each request's flow and polls it when its callout answers or a tick comes,
//! `routes` says what each route answers (as the component's `wasi:http` handler does). This
//! file wires them to the SDK's contexts.
//!
//! Pushes are answered `success` by the filter itself and handed on to a backend as JSON;
//! `POST /v1/notifications` is answered once WeChat has answered. There is no outbox: Envoy
//! answers its caller, and retrying is the caller's (see the README).

mod config;
mod proxy_env;
mod routes;
mod runtime;

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use config::Plugin;
use routes::Route;
use runtime::CalloutAnswer;

/// How often sleeping flows (a token refresh awaited elsewhere, a backoff) are looked at.
const TICK: Duration = Duration::from_millis(20);

#[allow(
    unsafe_code,
    reason = "proxy_wasm::main! exports `_initialize`, `#[no_mangle]`"
)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::Root::default()));
    }}
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Reads the answer of callout `token` inside `on_http_call_response`.
fn callout_answer(context: &dyn Context, num_headers: usize, body_size: usize) -> CalloutAnswer {
    let status = context
        .get_http_call_response_header(":status")
        .filter(|_| num_headers > 0)
        .and_then(|status| status.parse().ok());
    let body = if body_size > proxy_env::MAX_RESPONSE_BYTES {
        // Not an answer WeChat gives: the flow sees an unreadable body and says so.
        Vec::new()
    } else {
        context
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default()
    };
    CalloutAnswer { status, body }
}

#[derive(Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {
    // A flow polled from a tick dispatches while the root's callback runs, so the SDK may
    // deliver its answer here rather than to the request's context: both hand it on alike.
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        runtime::deliver(token, callout_answer(self, num_headers, body_size));
    }

    fn on_done(&mut self) -> bool {
        let waiting = runtime::waiting();
        if waiting > 0 {
            log(
                LogLevel::Warn,
                &format!("wxnotify: stopping with {waiting} requests still waiting for WeChat"),
            );
        }
        true
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Plugin::parse(&bytes, |name| std::env::var(name).ok()) {
            Ok(plugin) => {
                self.plugin = Some(Rc::new(plugin));
                self.set_tick_period(TICK);
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("wxnotify: {message}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        runtime::tick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            id: context_id,
            plugin: self.plugin.clone()?,
            awaiting_body: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request through the filter.
struct Request {
    id: u32,
    plugin: Rc<Plugin>,
    /// A route the filter answers, its method and query, while its body arrives.
    awaiting_body: Option<(Route, String, String)>,
}

impl Request {
    fn reply(&self, reply: &runtime::Reply) -> Action {
        self.send_http_response(
            reply.status,
            vec![("content-type", reply.content_type)],
            Some(&reply.body),
        );
        Action::Pause
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        runtime::deliver(token, callout_answer(self, num_headers, body_size));
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let path_and_query = self.get_http_request_header(":path").unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((&path_and_query, ""));
        let Some(route) = Route::of(&self.plugin.path_prefix, path) else {
            return Action::Continue;
        };
        let method = self.get_http_request_header(":method").unwrap_or_default();
        if !route.allows(&method) {
            return self.reply(&routes::refusal(
                405,
                "method_not_allowed",
                "method not allowed on this route",
            ));
        }
        if route.needs_api_key()
            && !self
                .plugin
                .admits(self.get_http_request_header("authorization").as_deref())
        {
            return self.reply(&routes::refusal(
                401,
                "unauthorized",
                "missing or wrong `Authorization: Bearer` API key",
            ));
        }
        let declared = self
            .get_http_request_header("content-length")
            .and_then(|length| length.parse::<usize>().ok());
        if declared.is_some_and(|length| length > route.max_body()) {
            return self.reply(&route.too_large());
        }
        if end_of_stream || method == "GET" {
            route.serve(
                self.id,
                self.plugin.clone(),
                &method,
                query.to_owned(),
                Vec::new(),
            );
        } else {
            self.awaiting_body = Some((route, method, query.to_owned()));
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((route, _, _)) = &self.awaiting_body else {
            return Action::Continue;
        };
        let route = *route;
        if body_size > route.max_body() {
            self.awaiting_body = None;
            return self.reply(&route.too_large());
        }
        if !end_of_stream {
            // Buffered by the proxy until the last chunk.
            return Action::Pause;
        }
        let Some((route, method, query)) = self.awaiting_body.take() else {
            return Action::Pause;
        };
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        route.serve(self.id, self.plugin.clone(), &method, query, body);
        Action::Pause
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        runtime::forget(self.id);
    }
}
