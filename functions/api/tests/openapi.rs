//! `functions/api/openapi.json` against the router: every `(method, path)` the router serves is
//! documented, and nothing else is. The router's routes are read from the source of `src/lib.rs`
//! (every `.route("PATH", get(…).post(…))` call), so this runs without the emulators. The document
//! is also checked for internal consistency: `openapi: 3.1.0`, every `$ref` resolves, every path
//! template parameter is declared, operation ids are unique, and only `/v1/openapi.json` and the payment
//! pages (`/pay/…`, whose signed link is the credential) opt out of the global bearer auth.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::Value;

const ROUTER_SOURCE: &str = include_str!("../src/lib.rs");
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

type Route = (String, String);

fn document() -> Value {
    serde_json::from_str(api::routes::openapi::DOCUMENT)
        .unwrap_or_else(|e| panic!("functions/api/openapi.json is not valid JSON: {e}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Just enough of a Rust lexer for router code: identifiers, string literals (plain and raw),
/// punctuation; comments, whitespace, char literals, lifetimes and numbers are skipped.
fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                // `r#ident`: a raw identifier.
                let start = j;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                tokens.push(Token::Ident(chars[start..j].iter().collect()));
                i = j;
                continue;
            }
            let start = j + 1;
            let mut k = start;
            loop {
                assert!(k < chars.len(), "unterminated raw string in src/lib.rs");
                if chars[k] == '"' && (1..=hashes).all(|h| chars.get(k + h) == Some(&'#')) {
                    break;
                }
                k += 1;
            }
            tokens.push(Token::Str(chars[start..k].iter().collect()));
            i = k + 1 + hashes;
        } else if c == '"' {
            let mut value = String::new();
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '"' {
                if chars[k] == '\\' {
                    k += 1;
                    match chars.get(k) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(&other) => value.push(other),
                        None => {}
                    }
                } else {
                    value.push(chars[k]);
                }
                k += 1;
            }
            tokens.push(Token::Str(value));
            i = k + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip either.
            if next == Some('\\') {
                let mut k = i + 2;
                while k < chars.len() && chars[k] != '\'' {
                    k += 1;
                }
                i = k + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Every `(METHOD, path)` registered with `.route(…)` in `source`. Panics on router calls it
/// cannot see through (`nest`, `merge`, `route_service`, `any`, `on`), so a new construct makes
/// this test be extended rather than silently pass.
fn router_routes(source: &str) -> BTreeSet<Route> {
    let tokens = tokenize(source);
    let mut routes = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let is_call = |name: &str| {
            tokens.get(i) == Some(&Token::Punct('.'))
                && tokens.get(i + 1) == Some(&Token::Ident(name.to_owned()))
                && tokens.get(i + 2) == Some(&Token::Punct('('))
        };
        for unsupported in ["nest", "nest_service", "merge", "route_service"] {
            assert!(
                !is_call(unsupported),
                "src/lib.rs calls .{unsupported}(…): teach tests/openapi.rs to read it"
            );
        }
        if !is_call("route") {
            i += 1;
            continue;
        }
        // A literal path, or one of the constants the domain spells its paths with.
        let path = match tokens.get(i + 3) {
            Some(Token::Str(path)) => path.clone(),
            Some(Token::Ident(name)) if name == "PAY_ROUTE" => {
                billing::portal::PAY_ROUTE.to_owned()
            }
            _ => panic!(
                "a .route(…) in src/lib.rs does not start with a string literal path or a known \
                 constant: {:?}",
                &tokens[i..(i + 6).min(tokens.len())]
            ),
        };
        let path = &path;
        assert_eq!(
            tokens.get(i + 4),
            Some(&Token::Punct(',')),
            "route {path}: expected `, method_router` after the path"
        );
        // The method router expression, up to the `)` closing `.route(`.
        let mut depth = 0usize;
        let mut j = i + 5;
        let mut methods = Vec::new();
        loop {
            let token = tokens
                .get(j)
                .unwrap_or_else(|| panic!("route {path}: unbalanced parentheses"));
            match token {
                Token::Punct('(' | '[' | '{') => depth += 1,
                Token::Punct(')' | ']' | '}') if depth == 0 => break,
                Token::Punct(')' | ']' | '}') => depth -= 1,
                Token::Ident(name) if depth == 0 => {
                    let called = tokens.get(j + 1) == Some(&Token::Punct('('));
                    if called && HTTP_METHODS.contains(&name.as_str()) {
                        methods.push(name.to_uppercase());
                    } else if called && matches!(name.as_str(), "any" | "on" | "any_service") {
                        panic!("route {path} uses {name}(…): list its methods explicitly");
                    }
                }
                _ => {}
            }
            j += 1;
        }
        assert!(!methods.is_empty(), "route {path}: no HTTP method found");
        for method in methods {
            assert!(
                routes.insert((method.clone(), path.clone())),
                "{method} {path} is registered twice"
            );
        }
        i = j;
    }
    routes
}

fn documented_routes(doc: &Value) -> BTreeSet<Route> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in HTTP_METHODS {
            if item.contains_key(method) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn show(routes: &BTreeSet<Route>) -> String {
    routes
        .iter()
        .map(|(m, p)| format!("  {m} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_parser_reads_rustfmt_layouts_comments_and_chains() {
    let source = r#"
        Router::new()
            // .route("/commented", get(x))
            .route("/a", get(h::a).post(h::b))
            .route(
                "/b/{id}",
                axum::routing::get(h::c)
                    .patch(h::d) /* .delete(x) */
                    .layer(Something::new(get_thing())),
            )
            .route("/c", delete(|s: State<S>| async move { s.get(1) }))
            .with_state(s)
    "#;
    let expected: BTreeSet<Route> = [
        ("GET", "/a"),
        ("POST", "/a"),
        ("GET", "/b/{id}"),
        ("PATCH", "/b/{id}"),
        ("DELETE", "/c"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(router_routes(source), expected);
}

#[test]
fn the_document_describes_exactly_the_routes_the_router_serves() {
    let served = router_routes(ROUTER_SOURCE);
    assert!(
        served.len() >= 20,
        "only {} routes found in src/lib.rs; is the parser still reading it?\n{}",
        served.len(),
        show(&served)
    );
    let documented = documented_routes(&document());
    let undocumented: BTreeSet<Route> = served.difference(&documented).cloned().collect();
    let unserved: BTreeSet<Route> = documented.difference(&served).cloned().collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "functions/api/openapi.json and src/lib.rs disagree.\n\
         Served but not documented:\n{}\nDocumented but not served:\n{}",
        show(&undocumented),
        show(&unserved)
    );
}

/// Every `$ref` in `value`, with the JSON path where it appears.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Some(target) = v.as_str()
                {
                    out.push((at.to_owned(), target.to_owned()));
                }
                refs(v, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_and_consistent() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut all_refs = Vec::new();
    refs(&doc, "#", &mut all_refs);
    for (at, target) in &all_refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: only local $refs are used, got {target}"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {target} does not resolve"
        );
    }

    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&"http".into(), &"bearer".into())
    );
    assert_eq!(doc["security"], serde_json::json!([{ "bearerAuth": [] }]));

    let mut operation_ids = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        for method in HTTP_METHODS {
            let Some(op) = item.get(method) else { continue };
            let name = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no operationId"));
            if let Some(other) = operation_ids.insert(id.to_owned(), name.clone()) {
                panic!("operationId {id} is used by both {other} and {name}");
            }
            let declared: BTreeSet<String> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{name}: path parameters are required");
                    p["name"].as_str().expect("parameter name").to_owned()
                })
                .collect();
            assert_eq!(declared, template, "{name}: path parameters");
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: no responses"));
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{name}: no success response"
            );
            if path == "/v1/openapi.json" || path.starts_with("/pay/") {
                // The document is public; a payment page's signed link is its own credential.
                assert_eq!(op["security"], serde_json::json!([]), "{name} needs no key");
            } else {
                assert!(
                    op.get("security").is_none(),
                    "{name}: uses the global bearer auth"
                );
                assert!(responses.contains_key("401"), "{name}: documents 401");
            }
            if op.get("requestBody").is_some() {
                for code in ["400", "413"] {
                    assert!(responses.contains_key(code), "{name}: documents {code}");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_handler_serves_the_document_as_json() {
    let response = api::routes::openapi::get().await.into_response();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let served: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(served, document());
}
