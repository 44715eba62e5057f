//! Drives the component's `wasi:http/incoming-handler` export: the JSON API a gateway can route
//! to directly (`POST /v1/notifications`, `GET /v1/users/{mini|oa|union}/{id}`, `POST /v1/login`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::error::Error;
use crate::runtime::Tenant;

/// The most the host reads of a component's HTTP response.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

impl Tenant {
    /// Hands `request` to the component's HTTP handler and returns its whole response.
    pub async fn handle_http(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, Error> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let answer = self
            .run(async |store, exports| {
                let request = store
                    .data_mut()
                    .http()
                    .new_incoming_request(Scheme::Http, request)?;
                let out = store.data_mut().http().new_response_outparam(sender)?;
                // The component streams its body after handing over the response, so the body
                // is read while the handler still runs.
                let handler = exports.incoming_handler(store)?;
                let call = handler.call_handle(&mut *store, request, out);
                let read = async {
                    let response = match receiver.await {
                        Ok(Ok(response)) => response,
                        Ok(Err(code)) => return Err(format!("the handler failed: {code:?}")),
                        Err(_) => return Err("the handler set no response".to_owned()),
                    };
                    let (parts, body) = response.into_parts();
                    let body = Limited::new(body, MAX_RESPONSE_BYTES)
                        .collect()
                        .await
                        .map_err(|e| format!("reading the response body: {e}"))?
                        .to_bytes();
                    Ok(http::Response::from_parts(parts, body))
                };
                let (called, read) = tokio::join!(call, read);
                called?;
                Ok(Ok::<_, wxnotify_contract::Error>(read))
            })
            .await?;
        answer.map_err(|message| Error::Component {
            tenant: self.id().to_owned(),
            message,
        })
    }
}
