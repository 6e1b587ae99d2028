//! Runs' file manifests (source snapshots, outputs) over content-addressed blobs, and the
//! step-key index.

use quiver_store::*;

use crate::{manual_options, new_run, temp_store};

fn file(path: &str, content: &[u8]) -> ManifestFile {
    ManifestFile {
        path: path.into(),
        size: content.len() as u64,
        mode: 0o644,
        digest: Digest::of(content).to_hex(),
    }
}

fn tag(s: &Store, run: &str, key: &str) -> Option<String> {
    s.get_run(run)
        .unwrap()
        .tags
        .into_iter()
        .find(|t| t.key == key)
        .map(|t| t.value)
}

#[test]
fn a_manifest_needs_its_blobs_and_keeps_them_from_the_collector() {
    let (_dir, s) = temp_store();
    let run = new_run(&s);
    let files = vec![file("train.py", b"print(1)"), file("lib/util.py", b"x = 2")];
    let digests: Vec<Digest> = [&b"print(1)"[..], b"x = 2"].map(Digest::of).to_vec();
    assert_eq!(s.missing_blobs(&digests), digests);

    // Bytes that do not hash to the digest are refused.
    let err = s.put_blob(&digests[0], &b"other"[..]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter(_)), "{err}");

    s.put_blob(&digests[0], &b"print(1)"[..]).unwrap();
    assert_eq!(s.missing_blobs(&digests), [digests[1]]);
    let err = s
        .put_manifest(&run, ManifestKind::Snapshot, files.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 file(s)") && err.contains("lib/util.py"),
        "{err}"
    );
    assert!(s.manifest(&run, ManifestKind::Snapshot).is_err());

    s.put_blob(&digests[1], &b"x = 2"[..]).unwrap();
    let m = s.put_manifest(&run, ManifestKind::Snapshot, files).unwrap();
    assert_eq!(m.files[0].path, "lib/util.py");
    assert_eq!(tag(&s, &run, "quiver.snapshot.root"), Some(m.root.clone()));
    assert_eq!(tag(&s, &run, "quiver.snapshot.files").as_deref(), Some("2"));
    assert_eq!(
        tag(&s, &run, "quiver.snapshot.bytes").as_deref(),
        Some("13")
    );
    assert_eq!(s.manifest(&run, ManifestKind::Snapshot).unwrap(), m);
    // The manifest is an artifact of the run, as clients list and download them.
    let root = s.get_run(&run).unwrap().info.artifact_uri;
    let root = root.trim_start_matches("mlflow-artifacts:/");
    let listed = s.list_artifacts(&format!("{root}/.quiver")).unwrap();
    assert_eq!(listed[0].path, "snapshot.json");

    // The collector keeps what the manifest names, and frees it once the manifest is gone.
    // (The refused bytes are stored under their own digest, which nothing names.)
    assert_eq!(s.gc().unwrap().blobs.blobs_removed, 1);
    assert!(s.missing_blobs(&digests).is_empty());
    let (entry, mut blob) = s
        .open_manifest_file(&run, ManifestKind::Snapshot, "train.py")
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut blob, &mut text).unwrap();
    assert_eq!((entry.size, text.as_str()), (8, "print(1)"));
    assert!(s
        .open_manifest_file(&run, ManifestKind::Snapshot, "nothere.py")
        .is_err());
    s.delete_artifacts(&format!("{root}/.quiver")).unwrap();
    let report = s.gc().unwrap();
    assert_eq!(report.blobs.blobs_removed, 3, "two files and the manifest");
    assert_eq!(s.missing_blobs(&digests), digests);
}

#[test]
fn bad_manifests_are_refused() {
    let (_dir, s) = temp_store();
    let run = new_run(&s);
    s.put_blob(&Digest::of(b"a"), &b"a"[..]).unwrap();
    for files in [
        vec![file("../escape", b"a")],
        vec![file("a", b"a"), file("a", b"a")],
        vec![file("a", b"a"), file("a/b", b"a")],
    ] {
        let err = s
            .put_manifest(&run, ManifestKind::Outputs, files)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter(_)), "{err}");
    }
    assert!(matches!(
        s.put_manifest("nosuchrun", ManifestKind::Outputs, vec![]),
        Err(Error::NotFound(_))
    ));
    assert!(ManifestKind::parse("other").is_err());
}

#[test]
fn runs_are_found_by_step_key_across_changes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let (a, b, c) = (new_run(&s), new_run(&s), new_run(&s));
    s.set_tag(&a, STEP_KEY_TAG, "k1").unwrap();
    s.set_tag(&b, STEP_KEY_TAG, "k1").unwrap();
    s.set_tag(&c, STEP_KEY_TAG, "k2").unwrap();
    let ids = |s: &Store, k: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .runs_with_step_key(k)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        v.sort();
        v
    };
    let mut ab = vec![a.clone(), b.clone()];
    ab.sort();
    assert_eq!(ids(&s, "k1"), ab);
    // A changed key moves the run; a deleted tag or run leaves it out.
    s.set_tag(&b, STEP_KEY_TAG, "k2").unwrap();
    assert_eq!(ids(&s, "k1"), std::slice::from_ref(&a));
    s.delete_tag(&c, STEP_KEY_TAG).unwrap();
    assert_eq!(ids(&s, "k2"), std::slice::from_ref(&b));
    s.delete_run(&a).unwrap();
    assert!(ids(&s, "k1").is_empty());
    assert!(ids(&s, "k").is_empty(), "a prefix of a key is not the key");
    s.restore_run(&a).unwrap();
    s.close().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    assert_eq!(ids(&s, "k1"), std::slice::from_ref(&a));
    assert_eq!(ids(&s, "k2"), [b]);
    // Purged runs leave the index.
    s.delete_run(&a).unwrap();
    s.purge(&PurgeRequest {
        run_ids: vec![a],
        ..Default::default()
    })
    .unwrap();
    assert!(ids(&s, "k1").is_empty());
}
