//! API Gateway (HTTP API, payload format 2.0) in miniature: an HTTP request becomes the JSON
//! event Lambda would receive, is decoded by lambda_http exactly as in Lambda, handled, and the
//! handler's Lambda response JSON becomes the HTTP response again. The handlers cannot tell the
//! difference.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use serde_json::{Value, json};

/// API Gateway's own payload limit (10 MB); Lambda's 6 MB limit is the handler's concern.
const GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// Serves one request through `handler` the way API Gateway and the Lambda runtime would.
pub async fn invoke(
    handler: axum::Router,
    request: Request<Body>,
    source: SocketAddr,
) -> Response<Body> {
    match try_invoke(handler, request, source).await {
        Ok(response) => response,
        Err((status, message)) => plain(status, &message),
    }
}

async fn try_invoke(
    handler: axum::Router,
    request: Request<Body>,
    source: SocketAddr,
) -> Result<Response<Body>, (StatusCode, String)> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, GATEWAY_MAX_BODY).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large".to_owned(),
        )
    })?;
    let event = to_event(&parts, &body, source);
    let request: LambdaRequest = serde_json::from_value(event).map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("lambda_http refused the event: {e}"),
        )
    })?;
    // The adapter itself is not `Send` (it names the response type behind a reference), so it
    // is dropped before awaiting; the future it returns is.
    let invocation = {
        let mut adapter = Adapter::from(handler);
        adapter.call(LambdaEvent::new(request, Context::default()))
    };
    let response = invocation
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("handler failed: {e:?}")))?;
    let response = serde_json::to_value(response).map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("unserialisable response: {e}"),
        )
    })?;
    from_lambda_response(&response).map_err(|e| (StatusCode::BAD_GATEWAY, e))
}

/// The payload-format-2.0 event for a request: lower-case headers with repeats joined by commas,
/// cookies split out, query parameters joined the same way, binary bodies base64-encoded.
fn to_event(parts: &axum::http::request::Parts, body: &[u8], source: SocketAddr) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in url_pairs(raw_query) {
        query
            .entry(k)
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(BASE64.encode(body)), true),
    };
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".to_owned()),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": source.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": is_base64,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

/// Splits a query string into decoded pairs, the way API Gateway fills
/// `queryStringParameters`.
fn url_pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

/// Turns the handler's API Gateway v2 response JSON back into HTTP.
fn from_lambda_response(response: &Value) -> Result<Response<Body>, String> {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("response lacks a valid statusCode")?;
    let mut builder = Response::builder().status(status);
    let headers = builder.headers_mut().ok_or("bad response builder")?;
    if let Some(map) = response["headers"].as_object() {
        for (name, value) in map {
            append_header(headers, name, value.as_str().unwrap_or_default())?;
        }
    }
    if let Some(map) = response["multiValueHeaders"].as_object() {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                append_header(headers, name, value.as_str().unwrap_or_default())?;
            }
        }
    }
    for cookie in response["cookies"].as_array().into_iter().flatten() {
        append_header(headers, "set-cookie", cookie.as_str().unwrap_or_default())?;
    }
    let body = match response["body"].as_str() {
        None => Vec::new(),
        Some(text) if response["isBase64Encoded"].as_bool() == Some(true) => BASE64
            .decode(text)
            .map_err(|e| format!("body is not base64: {e}"))?,
        Some(text) => text.as_bytes().to_vec(),
    };
    builder.body(Body::from(body)).map_err(|e| e.to_string())
}

fn append_header(
    headers: &mut axum::http::HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
    let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
    headers.append(name, value);
    Ok(())
}

/// A plain-text answer from the gateway itself (as API Gateway gives for its own failures).
fn plain(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(message.to_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_what_api_gateway_sends() {
        let request = Request::builder()
            .method("POST")
            .uri("/v1/customers?a=1&a=2&b=x%20y")
            .header("X-Thing", "1")
            .header("x-thing", "2")
            .header("cookie", "a=1; b=2")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let event = to_event(&parts, b"{}", "127.0.0.1:5000".parse().unwrap());
        assert_eq!(event["rawPath"], "/v1/customers");
        assert_eq!(event["headers"]["x-thing"], "1,2");
        assert_eq!(event["queryStringParameters"]["a"], "1,2");
        assert_eq!(event["queryStringParameters"]["b"], "x y");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["body"], "{}");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        let decoded: LambdaRequest = serde_json::from_value(event).unwrap();
        assert!(matches!(decoded, LambdaRequest::ApiGatewayV2(_)));
    }

    #[test]
    fn binary_bodies_are_base64_encoded_and_decoded_back() {
        let (parts, ()) = Request::builder().uri("/").body(()).unwrap().into_parts();
        let event = to_event(&parts, &[0xff, 0x00], "127.0.0.1:1".parse().unwrap());
        assert_eq!(event["isBase64Encoded"], true);
        let response = from_lambda_response(&json!({
            "statusCode": 200, "headers": {"content-type": "application/octet-stream"},
            "body": event["body"], "isBase64Encoded": true
        }))
        .unwrap();
        assert_eq!(response.status(), 200);
    }
}
