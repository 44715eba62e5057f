//! Implements `wasi:http/outgoing-handler` for tenants: [`EgressHooks::send_request`] is the
//! single egress gate of every component.
//!
//! Deny by default: a request leaves only if its `host:port` is in the tenant's allow-list
//! (by default, the host of its `api_base`). A denied request fails with
//! `HttpRequestDenied` before any connection is made. Logged URLs never show
//! `access_token`, `secret` or `js_code` values.

use std::collections::BTreeSet;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// The `host:port` pairs a tenant may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    authorities: BTreeSet<String>,
}

impl AllowList {
    /// An allow-list of `host:port` or `host` entries (`host` alone allows ports 80 and 443).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Self {
        let mut authorities = BTreeSet::new();
        for entry in entries {
            let entry = entry.as_ref().trim().to_ascii_lowercase();
            if entry.contains(':') {
                authorities.insert(entry);
            } else {
                authorities.insert(format!("{entry}:443"));
                authorities.insert(format!("{entry}:80"));
            }
        }
        AllowList { authorities }
    }

    /// Whether a request to `host` on `port` may leave.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.authorities
            .contains(&format!("{}:{port}", host.to_ascii_lowercase()))
    }

    /// The entries, for diagnostics.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.authorities.iter().map(String::as_str)
    }
}

/// A tenant's egress policy, consulted for every outgoing request.
pub struct EgressHooks {
    tenant: Arc<str>,
    allowed: Arc<AllowList>,
}

impl EgressHooks {
    /// Hooks for `tenant` allowing `allowed`.
    pub fn new(tenant: Arc<str>, allowed: Arc<AllowList>) -> Self {
        EgressHooks { tenant, allowed }
    }
}

/// `uri` with credential query values replaced by `***`.
pub fn redact(uri: &http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name @ ("access_token" | "secret" | "js_code"), _)) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!(
        "{}://{}{}?{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path(),
        redacted.join("&")
    )
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        drop(fut);
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        if !self.allowed.allows(&host, port) {
            tracing::warn!(tenant = %self.tenant, url = %redact(&uri), "egress denied: not in the tenant's allowed hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(tenant = %self.tenant, method = %request.method(), url = %redact(&uri), "egress");
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_is_exact_per_host_and_port() {
        let list = AllowList::new(["api.weixin.qq.com", "127.0.0.1:8080"]);
        assert!(list.allows("api.weixin.qq.com", 443));
        assert!(list.allows("API.weixin.qq.com", 80));
        assert!(!list.allows("api.weixin.qq.com", 8443));
        assert!(list.allows("127.0.0.1", 8080));
        assert!(!list.allows("127.0.0.1", 8081));
        assert!(!list.allows("evil.example", 443));
        assert!(!AllowList::default().allows("api.weixin.qq.com", 443));
    }

    #[test]
    fn redacts_credentials_in_urls() {
        let uri: http::Uri =
            "https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=S&js_code=C&grant_type=authorization_code"
                .parse()
                .unwrap();
        assert_eq!(
            redact(&uri),
            "https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=***&js_code=***&grant_type=authorization_code"
        );
        let uri: http::Uri = "http://h:1/cgi-bin/x?access_token=T".parse().unwrap();
        assert_eq!(redact(&uri), "http://h:1/cgi-bin/x?access_token=***");
    }
}
