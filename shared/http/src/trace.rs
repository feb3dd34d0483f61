//! A tracing span per HTTP request, so every log line of a request (the use case's own spans
//! nest inside) can be tied to it: API Gateway's request id (what the client sees in the
//! `apigw-requestid` header), the method, the route template (never the path: payment links
//! carry their token in it) and the answer's status.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;

/// Middleware: add with `Router::route_layer(axum::middleware::from_fn(request_span))`, so the
/// matched route is known.
pub async fn request_span(request: Request, next: Next) -> Response {
    let request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    }
    .or_else(|| {
        request
            .lambda_context_ref()
            .map(|context| context.request_id.clone())
    })
    .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    async move {
        let response = next.run(request).await;
        tracing::Span::current().record("status", response.status().as_u16());
        tracing::info!("answered");
        response
    }
    .instrument(span)
    .await
}
