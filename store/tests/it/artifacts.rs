//! Artifacts: content addressing, listing, path safety, gc.

use std::io::Read;

use quiver_store::*;

use crate::temp_store;

#[test]
fn same_bytes_are_stored_once_and_listed_by_level() {
    let (dir, s) = temp_store();
    let a = s
        .put_artifact("0/r1/artifacts/model/weights.bin", &b"same bytes"[..])
        .unwrap();
    let b = s
        .put_artifact("0/r2/artifacts/copy.bin", &b"same bytes"[..])
        .unwrap();
    assert_eq!(a.digest, b.digest);
    s.put_artifact("0/r1/artifacts/model/config.json", &b"{}"[..])
        .unwrap();
    s.put_artifact("0/r1/artifacts/model/sub/deep.txt", &b"deep"[..])
        .unwrap();
    s.put_artifact("0/r1/artifacts/model-card.md", &b"# card"[..])
        .unwrap();
    s.put_artifact("0/r1/artifacts/readme.txt", &b"hello"[..])
        .unwrap();
    let blob_files = walk(&dir.path().join("blobs"));
    assert_eq!(blob_files, 5, "five distinct contents");

    let root = s.list_artifacts("0/r1/artifacts").unwrap();
    let names: Vec<(&str, bool, Option<u64>)> = root
        .iter()
        .map(|e| (e.path.as_str(), e.is_dir, e.size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("model", true, None),
            ("model-card.md", false, Some(6)),
            ("readme.txt", false, Some(5))
        ]
    );
    let model = s.list_artifacts("0/r1/artifacts/model/").unwrap();
    let names: Vec<&str> = model.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec!["config.json", "sub", "weights.bin"]);
    assert!(s
        .list_artifacts("0/r1/artifacts/nothing")
        .unwrap()
        .is_empty());

    let (entry, mut file) = s.open_artifact("0/r1/artifacts/readme.txt").unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!((text.as_str(), entry.size), ("hello", 5));
    assert_eq!(
        &*s.map_artifact("0/r2/artifacts/copy.bin").unwrap().1,
        b"same bytes"
    );
    assert_eq!(
        s.artifact("0/r1/artifacts/missing").unwrap_err().code(),
        ErrorCode::ResourceDoesNotExist
    );

    // A file cannot become a directory and vice versa.
    assert!(s
        .put_artifact("0/r1/artifacts/readme.txt/x", &b""[..])
        .is_err());
    assert!(s.put_artifact("0/r1/artifacts/model", &b""[..]).is_err());
}

fn walk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().unwrap() != "tmp" {
                n += walk(&p);
            }
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn paths_cannot_escape_the_store() {
    let (_d, s) = temp_store();
    for bad in [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a\\b",
        "a\0b",
        "C:/x",
        "",
    ] {
        let e = s.put_artifact(bad, &b"x"[..]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameterValue, "{bad:?}");
        assert!(s.list_artifacts(bad).is_err() || bad.is_empty(), "{bad:?}");
    }
    assert_eq!(s.put_artifact("a//b/./c", &b"x"[..]).unwrap().path, "a/b/c");
}

#[test]
fn delete_and_gc_keep_referenced_blobs() {
    let (_d, s) = temp_store();
    let shared = s
        .put_artifact("1/r/artifacts/a.txt", &b"shared"[..])
        .unwrap();
    s.put_artifact("1/q/artifacts/b.txt", &b"shared"[..])
        .unwrap();
    s.put_artifact("1/r/artifacts/dir/c.txt", &b"only c"[..])
        .unwrap();
    s.put_artifact("1/r/artifacts/dir/d.txt", &b"only d"[..])
        .unwrap();
    s.delete_artifacts("1/r/artifacts/dir").unwrap();
    s.delete_artifacts("1/r/artifacts/a.txt").unwrap();
    assert!(s.list_artifacts("1/r/artifacts").unwrap().is_empty());
    let report = s.gc().unwrap();
    assert_eq!(
        (report.blobs.blobs_removed, report.blobs.blobs_kept),
        (2, 1)
    );
    let (_, bytes) = s.map_artifact("1/q/artifacts/b.txt").unwrap();
    assert_eq!(&*bytes, b"shared");
    assert_eq!(
        s.artifact("1/q/artifacts/b.txt").unwrap().digest,
        shared.digest
    );
}

#[test]
fn concurrent_puts_of_the_same_content() {
    let (_d, s) = temp_store();
    let s = std::sync::Arc::new(s);
    let content = vec![7u8; 3 << 20];
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, c) = (s.clone(), content.clone());
            std::thread::spawn(move || {
                s.put_artifact(&format!("0/r/artifacts/f{i}"), &c[..])
                    .unwrap()
                    .digest
            })
        })
        .collect();
    let digests: Vec<Digest> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(s.gc().unwrap().blobs.blobs_kept, 1);
}
