//! Drives the core's flows (async `fn`s over `Env`) from Proxy-Wasm's callbacks.
//!
//! A Proxy-Wasm host calls the filter; the filter never blocks. A flow's HTTP call is
//! `dispatch_http_call`, answered later by `on_http_call_response`; its backoff waits for
//! `on_tick`. So each request's flow is a future kept here, keyed by its HTTP context, and
//! polled again when what it waits for arrives: a callout's answer or a tick. Before each
//! poll the context is made effective (`set_effective_context`), so whatever the flow does —
//! another call, the final `send_http_response` — acts for its own request even when the
//! callback running is another context's (the root's tick).
//!
//! Written here rather than with an executor crate: the wakers would have nothing to do —
//! every wake-up is a host callback this module is already told about — and an executor
//! would still need this mapping from callouts and ticks to contexts.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// What a finished flow answers its request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The answer to a callout: `None` when none came (timeout, reset, no healthy host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutAnswer {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

type Flow = Pin<Box<dyn Future<Output = Reply>>>;

#[derive(Default)]
struct Flows {
    /// Flows waiting for something, by HTTP context.
    waiting: HashMap<u32, Flow>,
    /// The context each open callout belongs to, by token.
    callouts: HashMap<u32, u32>,
    /// Answers delivered and not yet taken by their flow, by token.
    answers: HashMap<u32, CalloutAnswer>,
    /// Contexts whose flow waits for time to pass.
    sleeping: BTreeSet<u32>,
}

thread_local! {
    static FLOWS: RefCell<Flows> = RefCell::default();
    /// The context whose flow is being polled (0: none).
    static POLLING: Cell<u32> = const { Cell::new(0) };
}

fn with_flows<T>(f: impl FnOnce(&mut Flows) -> T) -> T {
    FLOWS.with(|flows| f(&mut flows.borrow_mut()))
}

/// Runs `flow` for HTTP context `context` until it waits, then again whenever what it waits
/// for arrives; its reply is sent as the request's local response.
pub fn start(context: u32, flow: impl Future<Output = Reply> + 'static) {
    poll(context, Box::pin(flow));
}

/// Hands a callout's answer to the flow waiting for it.
pub fn deliver(token: u32, answer: CalloutAnswer) {
    let waiting = with_flows(|flows| {
        let context = flows.callouts.remove(&token)?;
        flows.answers.insert(token, answer);
        Some(context)
    });
    if let Some(context) = waiting {
        resume(context);
    }
}

/// Time has passed: polls every sleeping flow (each checks its own deadline).
pub fn tick() {
    let sleeping = with_flows(|flows| std::mem::take(&mut flows.sleeping));
    for context in sleeping {
        resume(context);
    }
}

/// The request of `context` is gone: drops its flow and whatever it waited for.
pub fn forget(context: u32) {
    with_flows(|flows| {
        flows.waiting.remove(&context);
        flows.sleeping.remove(&context);
        let tokens: Vec<u32> = flows
            .callouts
            .iter()
            .filter(|(_, owner)| **owner == context)
            .map(|(token, _)| *token)
            .collect();
        for token in tokens {
            flows.callouts.remove(&token);
            flows.answers.remove(&token);
        }
    });
}

/// How many flows are waiting (for the root's log on shutdown).
pub fn waiting() -> usize {
    with_flows(|flows| flows.waiting.len())
}

fn resume(context: u32) {
    if let Some(flow) = with_flows(|flows| flows.waiting.remove(&context)) {
        poll(context, flow);
    }
}

fn poll(context: u32, mut flow: Flow) {
    // The flow's host calls (callouts, the local response) must act for its own request.
    if hostcalls::set_effective_context(context).is_err() {
        // The context is gone: nobody is left to answer.
        return;
    }
    POLLING.set(context);
    let polled = flow.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    POLLING.set(0);
    match polled {
        Poll::Ready(reply) => {
            let headers = vec![("content-type", reply.content_type)];
            // Fails only when the request is already answered or reset: nothing to do then.
            let _ = hostcalls::send_http_response(reply.status, headers, Some(&reply.body));
        }
        Poll::Pending => {
            with_flows(|flows| flows.waiting.insert(context, flow));
        }
    }
}

/// Sends an HTTP call for the flow being polled; the future is its answer.
///
/// # Errors
///
/// The host's refusal to make the call (an unknown cluster, a missing pseudo-header).
pub fn call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<impl Future<Output = CalloutAnswer> + use<>, Status> {
    let token = hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout)?;
    with_flows(|flows| flows.callouts.insert(token, POLLING.get()));
    Ok(std::future::poll_fn(move |_| {
        match with_flows(|flows| flows.answers.remove(&token)) {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    }))
}

/// Waits until the host's clock reads `deadline_ms` (Unix milliseconds): woken by ticks.
pub fn sleep_until(deadline_ms: u64, now_ms: impl Fn() -> u64) -> impl Future<Output = ()> {
    std::future::poll_fn(move |_| {
        if now_ms() >= deadline_ms {
            Poll::Ready(())
        } else {
            with_flows(|flows| flows.sleeping.insert(POLLING.get()));
            Poll::Pending
        }
    })
}
