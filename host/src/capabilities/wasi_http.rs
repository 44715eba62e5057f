//! Implements `wasi:http/outgoing-handler` for tenants: [`EgressHooks::send_request`] is the
//! single egress gate of every component.
//!
//! Deny by default: a request leaves only if its `host:port` is in the tenant's allow-list
//! (by default, the host of its `api_base`). A denied request fails with
//! `HttpRequestDenied` before any connection is made. Allowed requests go through one
//! [`HttpClient`] shared by every tenant: pooled keep-alive connections, TLS verified against
//! the webpki roots, connect, response and between-bytes timeouts, and size limits both ways.
//! Logged URLs never show `access_token`, `secret`, `js_code` or `key` (a WeCom robot's webhook
//! key) values.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use wxnotify_tenants::AllowList;

/// Limits of outgoing HTTP.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time from sending a request to its response headers; a component may ask for less.
    pub response_timeout: Duration,
    /// Longest silence between two parts of a response body; a component may ask for less.
    pub between_bytes_timeout: Duration,
    /// Largest request body a component may send.
    pub max_request_bytes: u64,
    /// Largest response body handed to a component.
    pub max_response_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
        }
    }
}

/// Told about every outgoing request a tenant's component makes once the allow-list has let it
/// through: `(tenant, uri)`. `wxnotify serve` counts access-token fetches with it. It runs on the
/// request path, so it must be cheap; the URI may carry credentials in its query (see [`redact`]).
pub type EgressObserver = Arc<dyn Fn(&str, &http::Uri) + Send + Sync>;

/// The HTTP client every tenant's requests share: one connection pool, one TLS configuration.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, WasiBody>,
    limits: HttpLimits,
    // Shared by every clone (each tenant holds one), so an observer set after tenants were
    // added still sees their requests.
    observer: Arc<std::sync::RwLock<Option<EgressObserver>>>,
}

impl HttpClient {
    /// A client verifying servers against the webpki roots (the Mozilla CA set).
    pub fn new(limits: HttpLimits) -> Result<HttpClient, rustls::Error> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(limits.connect_timeout));
        http.set_nodelay(true);
        // Plain http is allowed for the sandbox on loopback; the allow-list decides who is reachable.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpClient {
            client,
            limits,
            observer: Arc::default(),
        })
    }

    /// Sets (or with `None` removes) the [`EgressObserver`] of this client and all its clones.
    pub fn set_observer(&self, observer: Option<EgressObserver>) {
        *self
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = observer;
    }

    fn observe(&self, tenant: &str, uri: &http::Uri) {
        let observer = self
            .observer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(observer) = observer {
            observer(tenant, uri);
        }
    }

    async fn send(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let at_most =
            |asked: Option<Duration>, limit: Duration| asked.map_or(limit, |a| a.min(limit));
        let wait = at_most(
            options.and_then(|o| o.first_byte_timeout),
            self.limits.response_timeout,
        );
        let silence = at_most(
            options.and_then(|o| o.between_bytes_timeout),
            self.limits.between_bytes_timeout,
        );
        let response = match tokio::time::timeout(wait, self.client.request(request)).await {
            Err(_) => return Err(HttpError::ConnectionReadTimeout),
            Ok(Err(error)) if error.is_connect() => {
                tracing::debug!("connect failed: {error:#}");
                return Err(HttpError::ConnectionRefused);
            }
            Ok(Err(error)) => {
                tracing::debug!("request failed: {error:#}");
                return Err(HttpError::ConnectionTerminated);
            }
            Ok(Ok(response)) => response,
        };
        let limit = self.limits.max_response_bytes;
        Ok(response.map(|body| {
            let limited = Limited::new(body, limit).map_err(move |error| {
                match error.downcast::<hyper::Error>() {
                    Ok(hyper) => HttpError::from(*hyper),
                    Err(_) => HttpError::HttpResponseBodySize(u64::try_from(limit).ok()),
                }
            });
            BetweenBytes::new(limited, silence).boxed_unsync()
        }))
    }
}

/// A response body that fails with `ConnectionReadTimeout` when no frame comes for `silence`:
/// a server that sends headers and then stalls holds no call and no pooled connection for
/// longer than that.
struct BetweenBytes<B> {
    body: B,
    silence: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> BetweenBytes<B> {
    fn new(body: B, silence: Duration) -> Self {
        BetweenBytes {
            body,
            silence,
            timer: Box::pin(tokio::time::sleep(silence)),
        }
    }
}

impl<B> http_body::Body for BetweenBytes<B>
where
    B: http_body::Body<Error = HttpError> + Unpin,
{
    type Data = B::Data;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, HttpError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.silence;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A tenant's egress policy, consulted for every outgoing request.
pub struct EgressHooks {
    tenant: Arc<str>,
    allowed: Arc<AllowList>,
    client: HttpClient,
}

impl EgressHooks {
    /// Hooks for `tenant` allowing `allowed`, sending through `client`.
    pub fn new(tenant: Arc<str>, allowed: Arc<AllowList>, client: HttpClient) -> Self {
        EgressHooks {
            tenant,
            allowed,
            client,
        }
    }
}

/// `uri` with credential query values replaced by `***` (the parameters
/// [`wxnotify_rules::credentials::QUERY_PARAMS`] names).
pub fn redact(uri: &http::Uri) -> String {
    wxnotify_rules::credentials::redact_url(&uri.to_string())
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
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
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let max = self.client.limits.max_request_bytes;
        if http_body::Body::size_hint(request.body()).lower() > max {
            tracing::warn!(tenant = %self.tenant, url = %redact(&uri), "egress denied: request body over {max} bytes");
            return Box::new(async move { Err(HttpError::HttpRequestBodySize(Some(max))) });
        }
        tracing::debug!(tenant = %self.tenant, method = %request.method(), url = %redact(&uri), "egress");
        self.client.observe(&self.tenant, &uri);
        let client = self.client.clone();
        Box::new(async move {
            let response = client.send(request, options).await?;
            // The pooled client drives its connections itself.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
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

    /// A server that answers headers for a 10-byte body, sends 3 bytes and falls silent.
    async fn stalling_server() -> std::net::SocketAddr {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_response_body_that_falls_silent_times_out() {
        let addr = stalling_server().await;
        let client = HttpClient::new(HttpLimits {
            between_bytes_timeout: Duration::from_secs(30),
            ..HttpLimits::default()
        })
        .unwrap();
        let request = http::Request::get(format!("http://{addr}/"))
            .body(
                http_body_util::Empty::new()
                    .map_err(|n| match n {})
                    .boxed_unsync(),
            )
            .unwrap();
        // The component asks for less than the host's limit: its wish is kept.
        let options = RequestOptions {
            between_bytes_timeout: Some(Duration::from_millis(200)),
            ..RequestOptions::default()
        };
        let response = client.send(request, Some(options)).await.unwrap();
        assert_eq!(response.status(), 200);
        let error = response.into_body().collect().await.unwrap_err();
        assert!(
            matches!(error, HttpError::ConnectionReadTimeout),
            "{error:?}"
        );
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

    #[test]
    fn redacts_a_wecom_robot_webhook_key() {
        let uri: http::Uri =
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4&debug=1"
                .parse()
                .unwrap();
        let logged = redact(&uri);
        assert_eq!(
            logged,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1"
        );
        assert!(!logged.contains("693a91f6"));
    }
}
