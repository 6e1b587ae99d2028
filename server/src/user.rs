//! Who makes a request: the user name of an `Authorization: Basic` header, which the `mlflow`
//! client sends when `MLFLOW_TRACKING_USERNAME` is set. Quiver does not authenticate: the name
//! is whatever the client claims (the password is ignored). It is recorded with registry and
//! deployment changes so that their history says who made them, and it is validated
//! ([`validate_user_name`]) so that the history holds no control characters or huge names.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

use crate::ApiError;

/// The longest user name accepted, in characters.
pub const MAX_USER_NAME_CHARS: usize = 256;

/// Checks a claimed user name: at most [`MAX_USER_NAME_CHARS`] characters, all printable (no
/// control characters, no invisible formatting or bidirectional-override characters, no line
/// or paragraph separators). Otherwise `400 INVALID_PARAMETER_VALUE`.
pub fn validate_user_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars > MAX_USER_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "The user name in the Authorization header has {chars} characters; at most \
             {MAX_USER_NAME_CHARS} are allowed"
        )));
    }
    if let Some(c) = name.chars().find(|&c| !is_printable(c)) {
        return Err(ApiError::invalid(format!(
            "The user name in the Authorization header holds a non-printable character \
             (U+{:04X}); only printable characters are allowed",
            c as u32
        )));
    }
    Ok(())
}

/// Not a control character (C0, DEL, C1), nor one of the invisible format characters that can
/// disguise a name (soft hyphen, zero-width and joiner characters, bidirectional controls, line
/// and paragraph separators, the byte-order mark).
fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'))
}

/// The request's user name, `""` when the request names none (no `Authorization` header, another
/// scheme, or a header that does not decode). As an extractor it rejects a request whose name
/// fails [`validate_user_name`] with `400 INVALID_PARAMETER_VALUE`.
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
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(User::from_authorization)
            .unwrap_or_default();
        validate_user_name(&user.0)?;
        Ok(user)
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

    #[test]
    fn user_names_must_be_printable_and_short() {
        for ok in [
            "",
            "alice",
            "d\u{e9}j\u{e0} vu",
            "\u{7528}\u{6237}",
            &"x".repeat(256),
        ] {
            assert!(validate_user_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "a\nb".to_string(),
            "nul\0".to_string(),
            "tab\t".to_string(),
            "esc\u{1b}[31m".to_string(),
            "del\u{7f}".to_string(),
            "c1\u{85}".to_string(),
            "bidi\u{202E}nimda".to_string(),
            "zero\u{200B}width".to_string(),
            "x".repeat(257),
        ] {
            let e = validate_user_name(&bad).unwrap_err();
            assert_eq!(e.code, "INVALID_PARAMETER_VALUE", "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_extractor_rejects_an_invalid_name() {
        let req = axum::http::Request::builder()
            .header(AUTHORIZATION, basic("ad\nmin:pw"))
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let e = User::from_request_parts(&mut parts, &()).await.unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
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
