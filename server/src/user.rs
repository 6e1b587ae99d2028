//! Who makes a request: the user name of an `Authorization: Basic` header, which the `mlflow`
//! client sends when `MLFLOW_TRACKING_USERNAME` is set. Quiver does not authenticate; the name is
//! recorded with registry and deployment changes so that their history says who made them.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

/// The request's user name, `""` when the request names none (no `Authorization` header, another
/// scheme, or a header that does not decode). Never rejects a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User(pub String);

impl User {
    /// The user named by an `Authorization` header value: `Basic base64(user:password)`.
    pub fn from_authorization(value: &str) -> User {
        let value = value.trim();
        let Some((scheme, credentials)) = value.split_once(' ') else {
            return User::default();
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return User::default();
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim())
        else {
            return User::default();
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return User::default();
        };
        let name = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
        User(name.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(User::from_authorization)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn basic_credentials_name_the_user() {
        assert_eq!(User::from_authorization(&basic("alice:s3cret")).0, "alice");
        // The password may hold colons; the user name cannot.
        assert_eq!(User::from_authorization(&basic("bob:a:b:c")).0, "bob");
        assert_eq!(User::from_authorization(&basic("carol")).0, "carol");
        assert_eq!(User::from_authorization(&basic(":pw")).0, "");
        assert_eq!(
            User::from_authorization(&basic("d\u{e9}j\u{e0}:x")).0,
            "d\u{e9}j\u{e0}"
        );
        let lower = basic("eve:x").replace("Basic", "basic");
        assert_eq!(User::from_authorization(&lower).0, "eve");
    }

    #[test]
    fn anything_else_is_no_user() {
        for value in [
            "",
            "Basic",
            "Basic !!!not-base64!!!",
            "Bearer dG9rZW4=",
            "Basic /w==", // not UTF-8
            "token",
        ] {
            assert_eq!(User::from_authorization(value), User::default(), "{value}");
        }
    }

    #[tokio::test]
    async fn the_extractor_reads_the_header() {
        let req = axum::http::Request::builder()
            .header(AUTHORIZATION, basic("frank:pw"))
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let user = User::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(user.0, "frank");
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        let user = User::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(user.0, "");
    }
}
