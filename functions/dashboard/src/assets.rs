//! The stylesheet, compiled into the function and served under a content-hashed path
//! (`/dashboard/assets/dashboard.<hash>.css`) with a year's immutable caching: a new
//! stylesheet gets a new path, so browsers never keep a stale one and never ask twice. It is
//! our own (no framework, no font files, no images), about 6 KB.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The stylesheet's text.
pub const STYLESHEET: &str = include_str!("../assets/dashboard.css");

static STYLESHEET_PATH: LazyLock<String> = LazyLock::new(|| {
    let hash = hex::encode(&Sha256::digest(STYLESHEET.as_bytes())[..8]);
    format!("/dashboard/assets/dashboard.{hash}.css")
});

/// The stylesheet's path, with its content hash.
pub fn stylesheet_path() -> &'static str {
    STYLESHEET_PATH.as_str()
}

/// `GET /dashboard/assets/{file}`: the stylesheet under its current hash; anything else 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    if stylesheet_path().rsplit('/').next() != Some(file.as_str()) {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_path_names_the_content() {
        let path = super::stylesheet_path();
        assert!(path.starts_with("/dashboard/assets/dashboard."));
        assert_eq!(path.len(), "/dashboard/assets/dashboard..css".len() + 16);
    }
}
