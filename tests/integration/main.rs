//! End-to-end tests: the real component in the real host against the WeChat API sandbox.
//!
//! One test binary (each one links wasmtime and Cranelift); one module per behaviour.

// The first vertical slice: a template message addressed by mini-program openid.
mod send_template;
// Egress: the tenant's allow-list is the only way out.
mod egress;
// Identity: login, follower sync, resolve-user, and what is missing when it cannot resolve.
mod identity;
// The component's JSON API over wasi:http/incoming-handler.
mod http_api;
// Access tokens: single-flight, refresh on 40001/42001, force-refresh budget, classic mode.
mod tokens;
// Sending: fallback, checks before sending, truncation, legacy requests, refusals, retries.
mod channels;
// Tenants: isolation of keys, limits and components; processes sharing storage.
mod tenants;
// WeChat's callback URLs: verification, plain and safe-mode pushes, the events recorded, refusals.
mod callbacks;
// Plugins: the WeCom group robot plugin, alone and swapped in live.
mod plugins;
// Hostile plugins: each stopped with an error naming its tenant while a neighbour sends.
mod hostile;
// The built components against the worlds of Spin and other hosts we do not run here.
mod gateways;
