"""Artifact flows of the real MLflow client: log_artifact(s), log_text, log_dict, log_image,
list_artifacts and download_artifacts (through MlflowClient and mlflow.artifacts).

With a tracking server that proxies artifacts (run artifact_uri `mlflow-artifacts:/...`),
the client PUTs and GETs files under /api/2.0/mlflow-artifacts/artifacts/<path> and lists
directories with GET /api/2.0/mlflow-artifacts/artifacts?path=<dir>.
"""

import json
import os

import mlflow
import numpy as np
import yaml
from PIL import Image


def listing(client, run_id, path=None):
    """{path: (is_dir, file_size)} of a run's artifact directory."""
    return {f.path: (f.is_dir, f.file_size) for f in client.list_artifacts(run_id, path)}


def test_new_run_has_no_artifacts(client):
    with mlflow.start_run() as run:
        pass
    assert client.list_artifacts(run.info.run_id) == []


def test_log_artifact_list_and_download_file(client, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src))
        mlflow.log_artifact(str(src), artifact_path="sub/dir")
    run_id = run.info.run_id

    assert listing(client, run_id) == {"a.txt": (False, 5), "sub": (True, None)}
    assert listing(client, run_id, "sub") == {"sub/dir": (True, None)}
    assert listing(client, run_id, "sub/dir") == {"sub/dir/a.txt": (False, 5)}

    # MlflowClient.download_artifacts: a file.
    dst = tmp_path / "dl-client"
    dst.mkdir()
    local = client.download_artifacts(run_id, "a.txt", str(dst))
    assert os.path.samefile(local, dst / "a.txt")
    assert (dst / "a.txt").read_text() == "hello"

    # mlflow.artifacts.download_artifacts(run_id=..., artifact_path=...): a nested file.
    dst2 = tmp_path / "dl-fluent"
    dst2.mkdir()
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="sub/dir/a.txt", dst_path=str(dst2)
    )
    assert open(local).read() == "hello"
    # The client resolves runs:/<id>/sub/dir/a.txt to that file and saves it by its basename.
    assert os.path.samefile(local, dst2 / "a.txt")


def test_log_artifacts_and_download_directory(client, artifact_tree, tmp_path):
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(artifact_tree), artifact_path="dd")
        mlflow.log_artifacts(str(artifact_tree / "e"))  # to the root
    run_id = run.info.run_id

    assert listing(client, run_id) == {
        "dd": (True, None),
        "y.txt": (False, 9),
        "f": (True, None),
    }
    assert listing(client, run_id, "dd") == {
        "dd/x.txt": (False, 9),
        "dd/e": (True, None),
    }
    assert listing(client, run_id, "dd/e") == {"dd/e/y.txt": (False, 9), "dd/e/f": (True, None)}
    assert listing(client, run_id, "dd/e/f") == {"dd/e/f/z.bin": (False, 256)}

    def check_tree(root):
        assert (root / "x.txt").read_text() == "x-content"
        assert (root / "e" / "y.txt").read_text() == "y-content"
        assert (root / "e" / "f" / "z.bin").read_bytes() == bytes(range(256))

    # MlflowClient.download_artifacts: a directory, recursively.
    dst = tmp_path / "dl-client"
    dst.mkdir()
    local = client.download_artifacts(run_id, "dd", str(dst))
    check_tree(dst / "dd")
    assert os.path.samefile(local, dst / "dd")

    # mlflow.artifacts.download_artifacts: a directory, and the whole run.
    dst2 = tmp_path / "dl-fluent"
    dst2.mkdir()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="dd", dst_path=str(dst2))
    check_tree(dst2 / "dd")
    dst3 = tmp_path / "dl-all"
    dst3.mkdir()
    mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(dst3))
    check_tree(dst3 / "dd")
    assert (dst3 / "y.txt").read_text() == "y-content"
    assert (dst3 / "f" / "z.bin").read_bytes() == bytes(range(256))


def test_binary_artifact_round_trip(client, tmp_path):
    payload = np.random.default_rng(7).integers(0, 256, 3 * 1024 * 1024 + 17, dtype=np.uint8)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload.tobytes())
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src), artifact_path="data")
    run_id = run.info.run_id
    assert listing(client, run_id, "data") == {"data/blob.bin": (False, payload.size)}
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="data/blob.bin", dst_path=str(tmp_path / "out")
    )
    assert open(local, "rb").read() == payload.tobytes()


def test_log_text_and_log_dict(client):
    with mlflow.start_run() as run:
        mlflow.log_text("some notes\nline 2\n", "notes/n.txt")
        mlflow.log_text("ünïcödé ✓", "unicode.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2], "c": {"d": None}}, "conf.json")
        mlflow.log_dict({"k": "v", "n": 3}, "conf.yaml")
    run_id = run.info.run_id
    assert set(listing(client, run_id)) == {"notes", "unicode.txt", "conf.json", "conf.yaml"}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/n.txt") == "some notes\nline 2\n"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/unicode.txt") == "ünïcödé ✓"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/conf.json") == {
        "a": 1,
        "b": [1, 2],
        "c": {"d": None},
    }
    assert json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/conf.json"))["a"] == 1
    assert yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run_id}/conf.yaml")) == {
        "k": "v",
        "n": 3,
    }


def test_log_image_numpy(client, tmp_path):
    arr = np.zeros((16, 24, 3), dtype=np.uint8)
    arr[:, :12] = [255, 0, 0]
    arr[:, 12:] = [0, 0, 255]
    with mlflow.start_run() as run:
        mlflow.log_image(arr, "plots/img.png")  # a plain artifact file
        mlflow.log_image(arr, key="img", step=0)  # an image series: images/ + a run tag
        mlflow.log_image(arr, key="img", step=1)
    run_id = run.info.run_id

    files = listing(client, run_id, "plots")
    assert list(files) == ["plots/img.png"] and files["plots/img.png"][1] > 0
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="plots/img.png", dst_path=str(tmp_path / "img")
    )
    with Image.open(local) as img:
        assert img.size == (24, 16)
        assert np.array_equal(np.asarray(img.convert("RGB")), arr)

    series = sorted(f.path for f in client.list_artifacts(run_id, "images"))
    assert len(series) == 4  # a .png and a compressed .webp per step
    for step in (0, 1):
        mine = [p for p in series if p.startswith(f"images/img+step+{step}+timestamp+")]
        assert len(mine) == 2, series
        assert sum(p.endswith("+compressed.webp") for p in mine) == 1
        assert sum(p.endswith(".png") for p in mine) == 1
    assert client.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"
