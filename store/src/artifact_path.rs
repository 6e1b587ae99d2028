//! Normalization of untrusted artifact paths.
//!
//! Artifact paths come from clients (MLflow's `path` and `artifact_path` parameters) and name
//! entries under a run's artifact root. Before such a path is used as a key or joined onto a
//! directory it goes through [`normalize`], which yields a canonical `/`-separated relative path
//! that cannot escape its root on any platform: no `..`, no absolute or drive-prefixed path, no
//! backslash (a separator on Windows), no NUL. The empty string stands for the root itself.

use crate::error::{Error, Result};

/// Longest accepted path component, in bytes (`NAME_MAX` on common filesystems).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Longest accepted normalized path, in bytes (`PATH_MAX` on Linux).
pub const MAX_PATH_BYTES: usize = 4096;

/// The store directory of an artifact URI this store serves (`mlflow-artifacts:/<path>` or
/// `mlflow-artifacts://<host>/<path>`), normalized; `None` for any other scheme (`file:`, `s3:`
/// ...), whose artifacts clients read and write directly and the store never holds.
pub fn served_root(uri: &str) -> Result<Option<String>> {
    let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
        return Ok(None);
    };
    let rest = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .find('/')
            .map_or("", |i| &authority_and_path[i..]),
        None => rest,
    };
    normalize(rest.trim_start_matches('/')).map(Some)
}

/// Normalizes a relative artifact path so that it can never escape its root.
///
/// Splits on `/` and drops empty and `.` components, so duplicate and trailing slashes (which
/// MLflow clients send for directories) are accepted: `"a//b/"` and `"./a/b"` give `"a/b"`. The
/// empty string, `"."` and the like normalize to `""`, the root.
///
/// Rejects with [`Error::InvalidParameter`] (message starting `"Invalid path"`) a path that:
/// is absolute (leading `/`); has a `..` component; contains a NUL byte or a backslash; has a
/// component starting with a Windows drive prefix (an ASCII letter then `:`, as in `C:` or
/// `c:foo`, in any position, since a component could later be joined on its own); has a
/// component longer than [`MAX_COMPONENT_BYTES`]; or normalizes to more than
/// [`MAX_PATH_BYTES`] bytes. Names merely containing dots, such as `...` or `a..b`, are
/// accepted: they are ordinary file names.
///
/// The result is idempotent: normalizing it again returns it unchanged.
pub fn normalize(path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Err(invalid(path, "absolute paths are not allowed"));
    }
    if path.contains('\0') {
        return Err(invalid(path, "NUL bytes are not allowed"));
    }
    if path.contains('\\') {
        return Err(invalid(path, "backslashes are not allowed"));
    }
    let mut out = String::with_capacity(path.len().min(MAX_PATH_BYTES));
    for component in path.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err(invalid(path, "'..' components are not allowed")),
            _ => {}
        }
        if has_drive_prefix(component) {
            return Err(invalid(path, "Windows drive prefixes are not allowed"));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(invalid(
                path,
                &format!("a component is longer than {MAX_COMPONENT_BYTES} bytes"),
            ));
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(component);
        if out.len() > MAX_PATH_BYTES {
            return Err(invalid(
                path,
                &format!("the path is longer than {MAX_PATH_BYTES} bytes"),
            ));
        }
    }
    Ok(out)
}

/// Joins a normalized root-relative directory and a normalized child path.
///
/// Either side may be `""`, the root: `join("", "a") == "a"`, `join("d", "a/b") == "d/a/b"`,
/// `join("d", "") == "d"`. Both arguments must come from [`normalize`] (or from this function);
/// the result is then normalized too.
pub fn join(dir: &str, child: &str) -> String {
    match (dir.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => dir.to_owned(),
        (false, false) => format!("{dir}/{child}"),
    }
}

/// Splits a normalized non-empty path into its parent directory and its file name.
///
/// `"a/b/c"` gives `("a/b", "c")` and `"c"` gives `("", "c")`, where `""` is the root: this is
/// how a listing finds the directory an artifact belongs to.
pub fn split_last(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Whether `component` starts like a Windows drive prefix (`C:`, `c:foo`).
fn has_drive_prefix(component: &str) -> bool {
    let b = component.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// The error for a rejected path, echoing (a bounded, escaped prefix of) the input.
fn invalid(path: &str, reason: &str) -> Error {
    const SHOWN: usize = 200;
    let shown = match path.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{:?}...", &path[..i]),
        None => format!("{path:?}"),
    };
    Error::InvalidParameter(format!("Invalid path {shown}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn ok(path: &str) -> String {
        normalize(path).unwrap_or_else(|e| panic!("{path:?} rejected: {e}"))
    }

    fn rejected(path: &str) -> String {
        match normalize(path) {
            Err(Error::InvalidParameter(msg)) => {
                assert!(msg.starts_with("Invalid path"), "{msg}");
                msg
            }
            other => panic!("{path:?} gave {other:?}"),
        }
    }

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(ok("a"), "a");
        assert_eq!(ok("a/b/c.txt"), "a/b/c.txt");
        assert_eq!(ok("a//b/"), "a/b");
        assert_eq!(ok("a/b///"), "a/b");
        assert_eq!(ok("./a/./b/."), "a/b");
        assert_eq!(ok("model/"), "model");
        assert_eq!(ok("..."), "...");
        assert_eq!(ok("a..b/.hidden/..x"), "a..b/.hidden/..x");
        assert_eq!(ok("with space/ünïcödé/日本"), "with space/ünïcödé/日本");
        // A colon is fine unless it follows a single leading letter.
        assert_eq!(ok("ab:c/1:x/xy:z/run:3"), "ab:c/1:x/xy:z/run:3");
        assert_eq!(ok(":"), ":");
    }

    #[test]
    fn root_equivalents() {
        for p in ["", ".", "./", "./.", ".//./", "./././"] {
            assert_eq!(ok(p), "", "{p:?}");
        }
    }

    #[test]
    fn rejects_absolute() {
        for p in ["/", "/a", "//a", "/a/b", "/."] {
            assert!(rejected(p).contains("absolute"), "{p:?}");
        }
    }

    #[test]
    fn rejects_parent_components() {
        for p in [
            "..",
            "../a",
            "a/..",
            "a/../b",
            "a/b/../../..",
            "./..",
            "a//../",
        ] {
            assert!(rejected(p).contains(".."), "{p:?}");
        }
    }

    #[test]
    fn rejects_nul_and_backslash() {
        assert!(rejected("a\0b").contains("NUL"));
        assert!(rejected("\0").contains("NUL"));
        assert!(rejected("a\\b").contains("backslash"));
        assert!(rejected("..\\..\\etc").contains("backslash"));
        assert!(rejected("\\\\server\\share").contains("backslash"));
    }

    #[test]
    fn rejects_drive_prefixes() {
        for p in ["C:", "c:", "C:/x", "C:foo", "z:/", "a/C:/b", "./D:", "a:b"] {
            assert!(rejected(p).contains("drive"), "{p:?}");
        }
    }

    #[test]
    fn rejects_long_components_and_paths() {
        let max = "x".repeat(MAX_COMPONENT_BYTES);
        assert_eq!(ok(&max), max);
        assert!(rejected(&format!("{max}x")).contains("component"));
        // Multi-byte characters count in bytes: 128 * 2 bytes = 256.
        assert!(rejected(&"é".repeat(128)).contains("component"));
        assert_eq!(ok(&"é".repeat(127)).len(), 254);

        // 16 components of 255 bytes + 15 slashes = 4095 bytes: accepted.
        let long = vec!["y".repeat(255); 16].join("/");
        assert_eq!(long.len(), 4095);
        assert_eq!(ok(&long), long);
        assert_eq!(ok(&format!("{long}/")), long);
        assert!(rejected(&format!("{long}/z")).contains("longer than 4096"));
        assert!(rejected(&format!("{long}zz")).contains("component"));
        // Slashes that normalization drops do not count.
        let padded = format!("{}/{long}", "./".repeat(5000));
        assert_eq!(ok(&padded), long);
    }

    #[test]
    fn error_message_is_bounded_and_escaped() {
        let msg = rejected(&format!("{}\0", "a".repeat(100_000)));
        assert!(msg.len() < 400, "{}", msg.len());
        let msg = rejected("a\0b");
        assert!(msg.contains("\\0"), "{msg}");
    }

    #[test]
    fn join_and_split() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("d", "a/b"), "d/a/b");
        assert_eq!(join("d", ""), "d");
        assert_eq!(join("", ""), "");
        assert_eq!(split_last("a/b/c"), ("a/b", "c"));
        assert_eq!(split_last("c"), ("", "c"));
    }

    fn assert_normal(n: &str) {
        assert!(!n.starts_with('/'), "{n:?}");
        assert!(!n.contains('\\') && !n.contains('\0'), "{n:?}");
        assert!(n.len() <= MAX_PATH_BYTES);
        if !n.is_empty() {
            for c in n.split('/') {
                assert!(!c.is_empty() && c != "." && c != "..", "{n:?}");
                assert!(c.len() <= MAX_COMPONENT_BYTES);
                assert!(!has_drive_prefix(c), "{n:?}");
            }
        }
        // Joined onto a root, it stays strictly below that root.
        let joined = Path::new("/srv/root").join(n);
        assert!(joined.starts_with("/srv/root"), "{n:?}");
        assert!(
            joined
                .components()
                .skip(3)
                .all(|c| matches!(c, Component::Normal(_))),
            "{n:?}"
        );
    }

    /// Paths built from the characters that matter, so that interesting cases are frequent.
    fn tricky_path() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("\\".to_owned()),
            Just("\0".to_owned()),
            Just(":".to_owned()),
            Just("C".to_owned()),
            Just("a".to_owned()),
            Just("é".to_owned()),
            "[a-z.]{1,4}",
        ];
        proptest::collection::vec(part, 0..16).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn normalize_output_is_safe_and_idempotent(p in tricky_path()) {
            if let Ok(n) = normalize(&p) {
                assert_normal(&n);
                prop_assert_eq!(normalize(&n).unwrap(), n.clone());
                if !n.is_empty() {
                    let (dir, name) = split_last(&n);
                    prop_assert_eq!(join(dir, name), n.clone());
                }
            }
        }

        #[test]
        fn normalize_arbitrary_strings(p in "(?s).{0,64}") {
            if let Ok(n) = normalize(&p) {
                assert_normal(&n);
                prop_assert_eq!(normalize(&n).unwrap(), n);
            }
        }

        #[test]
        fn slashes_and_dots_do_not_matter(parts in proptest::collection::vec("[a-z0-9_.-]{1,8}", 1..6)) {
            prop_assume!(parts.iter().all(|p| p != ".." && p != "."));
            let plain = parts.join("/");
            let noisy = format!("./{}//", parts.join("//./"));
            prop_assert_eq!(normalize(&plain).unwrap(), plain.clone());
            prop_assert_eq!(normalize(&noisy).unwrap(), plain);
        }

        #[test]
        fn join_of_normalized_is_normalized(a in tricky_path(), b in tricky_path()) {
            if let (Ok(a), Ok(b)) = (normalize(&a), normalize(&b)) {
                let j = join(&a, &b);
                if j.len() <= MAX_PATH_BYTES {
                    prop_assert_eq!(normalize(&j).unwrap(), j);
                }
            }
        }
    }
}
