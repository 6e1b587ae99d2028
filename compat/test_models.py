"""Models through the real MLflow client: logged models (`mlflow.pyfunc.log_model` of a
`PythonModel`, so no ML framework is needed), registration (`register_model` from `runs:/` and
`models:/`), loading by every URI form and predicting, and the model registry (registered
models, versions, tags, aliases, stages, searches, rename, delete, error codes).

Expected values are what a real `mlflow server` (3.17.2, SQLite store, proxied artifacts)
answers. Every test makes its own registered models (names from `unique_name`, so they are
unique across tests and across runs of the suite against one store) and its own runs and
logged models in the test's own experiment. Registry searches are global, so every search
filter is scoped to the test's own name prefix.

The last section, "Quiver only", covers Quiver's deployment records (a deployment names a
model version or an alias; while it exists the version, its registered model and its run cannot
be deleted), the registry event history, and the `quiver deployments` / `quiver models history`
commands. MLflow has none of this: those tests skip unless the server answers
`GET /api/2.0/quiver/deployments` (the CLI tests also need `$QUIVER_BIN`).

Where the real server differs from the reference (/work/shared/reference/mlflow-api.md), the
real server wins; the differences are noted at the tests concerned (search "Real MLflow").
"""

import json
import os
import subprocess
import sys
import time

import cloudpickle
import mlflow
import mlflow.pyfunc
import pandas as pd
import pytest
import requests
from mlflow.entities import LoggedModelStatus
from mlflow.pyfunc import PythonModel

from conftest import raises_mlflow, unique_name

pytestmark = [
    # Stages are deprecated in MLflow 2.9+, but still served; the client warns on every call.
    pytest.mark.filterwarnings("ignore:.*Model registry stages will be removed:FutureWarning"),
]


# ---------------------------------------------------------------------------------------
# Helpers


class Multiplier(PythonModel):
    """A pyfunc model that multiplies its input by a constant: which version answered a
    prediction shows in the result."""

    def __init__(self, factor):
        self.factor = factor

    # A DataFrame type hint: without one, the client warns each time the class is defined
    # (loading a model defines it again); with it, the client infers no signature.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input * self.factor


# Pickle the model class by value, so loading does not depend on how pytest imported this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

INPUT = pd.DataFrame({"x": [1.0, 2.5]})


def predict(model_uri):
    """Loads `model_uri` with `mlflow.pyfunc.load_model` and returns its prediction for INPUT."""
    model = mlflow.pyfunc.load_model(model_uri)
    return list(model.predict(INPUT)["x"])


def doubled_by(factor):
    return [x * factor for x in INPUT["x"]]


def log_multiplier(factor, registered_model_name=None):
    """Logs a `Multiplier(factor)` with `mlflow.pyfunc.log_model(name="model")` in a new run of
    the active experiment; returns (run_id, ModelInfo)."""
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Multiplier(factor),
            registered_model_name=registered_model_name,
            # Any explicit requirement list skips the client's requirement inference, which
            # loads the model in a subprocess (a second or more per model).
            pip_requirements=["pandas"],
        )
    return run.info.run_id, info


def new_run(client, experiment_id):
    return client.create_run(experiment_id).info.run_id


def new_model(client, prefix, run_id, count=1, **kwargs):
    """Creates a registered model with `count` versions (sources `runs:/<run_id>/model`, no
    artifacts needed) and returns its name."""
    name = unique_name(prefix)
    client.create_registered_model(name, **kwargs)
    for _ in range(count):
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    return name


def versions(model_versions):
    return [mv.version for mv in model_versions]


def model_names(registered_models, prefix):
    """Names of registered models with the test's prefix stripped (for readable asserts)."""
    return [m.name[len(prefix):] for m in registered_models]


def stages(model_versions):
    return sorted((mv.version, mv.current_stage) for mv in model_versions)


def tick():
    """Lets the millisecond clock move on, so that entities created one after another get
    distinct timestamps (the orders under test sort on them)."""
    time.sleep(0.01)


# ---------------------------------------------------------------------------------------
# Logged models


def test_log_model_with_registered_model_name(client):
    name = unique_name("log-model")
    run_id, info = log_multiplier(2, registered_model_name=name)
    assert str(info.registered_model_version) == "1"
    assert info.model_id.startswith("m-")
    assert info.model_uri == f"models:/{info.model_id}"

    mv = client.get_model_version(name, "1")
    assert (mv.name, mv.version, mv.current_stage, mv.status) == (name, "1", "None", "READY")
    # The version's source is the logged model; its run is the logged model's source run.
    assert mv.source == f"models:/{info.model_id}"
    assert mv.run_id == run_id
    rm = client.get_registered_model(name)
    assert versions(rm.latest_versions) == ["1"]
    # The download URI of a version whose source is `models:/<id>` is the logged model's
    # artifact location.
    logged = client.get_logged_model(info.model_id)
    assert client.get_model_version_download_uri(name, "1") == logged.artifact_location


def test_log_model_creates_a_logged_model(client, experiment):
    name = unique_name("log-model")
    run_id, info = log_multiplier(2, registered_model_name=name)
    model = mlflow.get_logged_model(info.model_id)
    assert model.model_id == info.model_id
    assert model.name == "model"
    assert model.experiment_id == experiment.experiment_id
    assert model.source_run_id == run_id
    assert model.status == LoggedModelStatus.READY  # finalized by log_model
    assert model.model_uri == f"models:/{info.model_id}"
    assert model.artifact_location == (
        f"{experiment.artifact_location}/models/{info.model_id}/artifacts"
    )
    assert model.creation_timestamp <= model.last_updated_timestamp
    # Tags from the client: the source tags, and the versions registered from the model.
    assert "mlflow.user" in model.tags
    registered = json.loads(model.tags["mlflow.modelVersions"])
    assert {"name": name, "version": 1} in [
        {"name": v["name"], "version": int(v["version"])} for v in registered
    ]
    # The model's files live under its own artifact location.
    files = {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "python_model.pkl", "requirements.txt"} <= files


def test_log_model_records_a_run_output(client):
    run_id, info = log_multiplier(2)
    outputs = client.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(info.model_id, 0)]


def test_logged_model_params_metrics_and_run_inputs(client, experiment_id):
    model = mlflow.initialize_logged_model(
        name="agent", params={"k": "v"}, tags={"t": "1"}, model_type="agent"
    )
    assert model.status == LoggedModelStatus.PENDING
    assert model.source_run_id == ""
    assert model.experiment_id == experiment_id
    mlflow.log_model_params({"k2": "v2"}, model_id=model.model_id)
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.75, step=3, model_id=model.model_id)
    got = client.get_logged_model(model.model_id)
    assert got.name == "agent"
    assert got.model_type == "agent"
    assert got.params == {"k": "v", "k2": "v2"}
    assert got.tags["t"] == "1"
    assert [(m.key, m.value, m.step, m.run_id, m.model_id) for m in got.metrics] == [
        ("acc", 0.75, 3, run.info.run_id, model.model_id)
    ]
    # The metric is also a plain run metric, and the client records the model as a run input.
    logged_run = client.get_run(run.info.run_id)
    assert logged_run.data.metrics == {"acc": 0.75}
    assert [i.model_id for i in logged_run.inputs.model_inputs] == [model.model_id]


def test_logged_model_tags(client):
    model = mlflow.initialize_logged_model(name="tagged", tags={"a": "1"})
    mlflow.set_logged_model_tags(model.model_id, {"b": "2", "a": "one"})
    client.set_logged_model_tags(model.model_id, {"c": "3"})
    client.delete_logged_model_tag(model.model_id, "b")
    tags = client.get_logged_model(model.model_id).tags
    assert {k: v for k, v in tags.items() if not k.startswith("mlflow.")} == {"a": "one", "c": "3"}
    # Unlike registry tags, deleting a missing logged-model tag is an error.
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "nope"):
        client.delete_logged_model_tag(model.model_id, "nope")


def test_finalize_logged_model(client):
    ready = mlflow.initialize_logged_model(name="ready")
    failed = mlflow.initialize_logged_model(name="failed")
    returned = client.finalize_logged_model(ready.model_id, LoggedModelStatus.READY)
    assert returned.status == LoggedModelStatus.READY
    client.finalize_logged_model(failed.model_id, LoggedModelStatus.FAILED)
    assert client.get_logged_model(ready.model_id).status == LoggedModelStatus.READY
    assert client.get_logged_model(failed.model_id).status == LoggedModelStatus.FAILED


def test_delete_logged_model(client, experiment_id):
    kept = mlflow.initialize_logged_model(name="kept")
    gone = mlflow.initialize_logged_model(name="gone")
    client.delete_logged_model(gone.model_id)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", gone.model_id):
        client.get_logged_model(gone.model_id)
    found = client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.model_id for m in found] == [kept.model_id]


def test_get_missing_logged_model(client):
    missing = "m-" + "0" * 32
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        client.get_logged_model(missing)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        mlflow.get_logged_model(missing)


def make_logged_models(client):
    """Three logged models in the active experiment, created in this order (distinct creation
    times): a (k=v, t=1, acc 0.9), b (k=w, acc 0.3), c (nothing)."""
    a = mlflow.initialize_logged_model(name="a", params={"k": "v"}, tags={"t": "1"})
    tick()
    b = mlflow.initialize_logged_model(name="b", params={"k": "w"})
    tick()
    c = mlflow.initialize_logged_model(name="c")
    with mlflow.start_run():
        mlflow.log_metric("acc", 0.9, model_id=a.model_id)
        mlflow.log_metric("acc", 0.3, model_id=b.model_id)
    return a, b, c


def test_search_logged_models_filters(client, experiment_id):
    make_logged_models(client)
    cases = {
        "": ["c", "b", "a"],  # default order: creation time, newest first
        "name = 'a'": ["a"],
        "name != 'a'": ["c", "b"],
        "name LIKE 'b%'": ["b"],
        "params.k = 'v'": ["a"],
        "params.k != 'v'": ["b"],  # a model without the param never matches
        "tags.t = '1'": ["a"],
        "metrics.acc > 0.5": ["a"],
        "metrics.acc < 0.5": ["b"],
        "metrics.acc >= 0.3": ["b", "a"],
        "metrics.acc > 0.95": [],
        "name = 'a' AND params.k = 'v'": ["a"],
        "name = 'b' AND params.k = 'v'": [],
    }
    for filter_string, expected in cases.items():
        listed = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=filter_string or None
        )
        assert [m.name for m in listed] == expected, filter_string
        fluent = mlflow.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=filter_string or None,
            output_format="list",
        )
        assert [m.name for m in fluent] == expected, filter_string


def test_search_logged_models_order_and_paging(client, experiment_id):
    a, b, c = make_logged_models(client)

    def search(**kwargs):
        found = client.search_logged_models(experiment_ids=[experiment_id], **kwargs)
        return [m.name for m in found]

    assert search(order_by=[{"field_name": "creation_timestamp", "ascending": True}]) == [
        "a", "b", "c"
    ]
    assert search(order_by=[{"field_name": "name", "ascending": False}]) == ["c", "b", "a"]
    assert search(order_by=[{"field_name": "name", "ascending": True}]) == ["a", "b", "c"]

    page1 = client.search_logged_models(experiment_ids=[experiment_id], max_results=2)
    assert [m.name for m in page1] == ["c", "b"]
    assert page1.token
    page2 = client.search_logged_models(
        experiment_ids=[experiment_id], max_results=2, page_token=page1.token
    )
    assert [m.name for m in page2] == ["a"]
    assert not page2.token

    # The pandas form.
    df = mlflow.search_logged_models(experiment_ids=[experiment_id])
    assert list(df["name"]) == ["c", "b", "a"]
    assert list(df["model_id"]) == [c.model_id, b.model_id, a.model_id]

    # Scoped to the experiments asked for.
    other = client.create_experiment(unique_name("other-experiment"))
    assert client.search_logged_models(experiment_ids=[other]) == []


# ---------------------------------------------------------------------------------------
# Registering and loading


def test_register_model_from_runs_and_models_uris(client):
    run_id, info = log_multiplier(2)
    name = unique_name("register")
    mv1 = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert (mv1.name, mv1.version) == (name, "1")
    # A `runs:/R/model` URI resolves to the logged model named "model" of run R.
    assert mv1.source == f"models:/{info.model_id}"
    assert mv1.run_id == run_id
    mv2 = mlflow.register_model(f"models:/{info.model_id}", name)
    assert (mv2.name, mv2.version) == (name, "2")
    assert mv2.source == f"models:/{info.model_id}"
    # The server fills the run from the logged model's source run.
    assert mv2.run_id == run_id
    assert versions(
        client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    ) == ["1", "2"]
    for version in ("1", "2"):
        got = client.get_model_version(name, version)
        assert (got.source, got.run_id, got.status) == (f"models:/{info.model_id}", run_id, "READY")


def test_register_model_into_a_new_and_an_existing_model(client):
    _, first = log_multiplier(2)
    _, second = log_multiplier(3)
    name = unique_name("register")
    assert mlflow.register_model(f"models:/{first.model_id}", name).version == "1"
    assert mlflow.register_model(f"models:/{second.model_id}", name).version == "2"
    assert predict(f"models:/{name}/1") == doubled_by(2)
    assert predict(f"models:/{name}/2") == doubled_by(3)


def test_load_model_by_version(client):
    name = unique_name("load-version")
    log_multiplier(2, registered_model_name=name)
    log_multiplier(3, registered_model_name=name)
    assert predict(f"models:/{name}/1") == doubled_by(2)
    assert predict(f"models:/{name}/2") == doubled_by(3)


def test_load_model_by_alias(client):
    name = unique_name("load-alias")
    log_multiplier(2, registered_model_name=name)
    log_multiplier(3, registered_model_name=name)
    client.set_registered_model_alias(name, "champion", "1")
    assert predict(f"models:/{name}@champion") == doubled_by(2)
    client.set_registered_model_alias(name, "champion", "2")  # moved
    assert predict(f"models:/{name}@champion") == doubled_by(3)


def test_load_model_by_stage(client):
    name = unique_name("load-stage")
    log_multiplier(2, registered_model_name=name)
    log_multiplier(3, registered_model_name=name)
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Staging")
    assert predict(f"models:/{name}/Production") == doubled_by(2)
    assert predict(f"models:/{name}/Staging") == doubled_by(3)
    # `latest` is the newest version whatever its stage.
    assert predict(f"models:/{name}/latest") == doubled_by(3)


def test_load_model_by_run_and_logged_model_uris(client):
    run_id, info = log_multiplier(4)
    assert predict(f"runs:/{run_id}/model") == doubled_by(4)
    assert predict(f"models:/{info.model_id}") == doubled_by(4)
    assert predict(info.model_uri) == doubled_by(4)


def test_load_model_missing_version_or_alias(client):
    name = unique_name("load-missing")
    log_multiplier(2, registered_model_name=name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        mlflow.pyfunc.load_model(f"models:/{name}/7")
    # Real MLflow: an unknown alias is INVALID_PARAMETER_VALUE ("Registered model alias x not
    # found."), not RESOURCE_DOES_NOT_EXIST.
    with raises_mlflow("INVALID_PARAMETER_VALUE", "not found"):
        mlflow.pyfunc.load_model(f"models:/{name}@nobody")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        mlflow.pyfunc.load_model(f"models:/{unique_name('no-such-model')}/1")


# ---------------------------------------------------------------------------------------
# Registered models and versions


def test_create_and_get_registered_model(client):
    name = unique_name("create")
    created = client.create_registered_model(name, tags={"team": "risk"}, description="fraud")
    assert created.name == name
    assert created.description == "fraud"
    assert created.tags == {"team": "risk"}
    got = client.get_registered_model(name)
    assert (got.name, got.description, got.tags) == (name, "fraud", {"team": "risk"})
    assert got.latest_versions == []
    assert got.aliases == {}
    assert got.creation_timestamp > 0
    assert got.last_updated_timestamp >= got.creation_timestamp
    # No description is an empty one (MLflow sends `"description": ""`), not a missing one.
    plain = unique_name("create-plain")
    client.create_registered_model(plain)
    got = client.get_registered_model(plain)
    assert (got.description, got.tags) == ("", {})


def test_create_model_version(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = unique_name("versions")
    client.create_registered_model(name)
    mv = client.create_model_version(
        name, f"runs:/{run_id}/model", run_id=run_id, tags={"k": "v"}, description="first"
    )
    assert (mv.name, mv.version, mv.status, mv.current_stage) == (name, "1", "READY", "None")
    assert (mv.source, mv.run_id, mv.description) == (f"runs:/{run_id}/model", run_id, "first")
    assert mv.tags == {"k": "v"}
    assert client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version == "2"
    got = client.get_model_version(name, "1")
    assert (got.source, got.run_id, got.description, got.tags) == (
        f"runs:/{run_id}/model", run_id, "first", {"k": "v"}
    )
    assert got.creation_timestamp > 0
    # No description is an empty one, as for registered models.
    assert client.get_model_version(name, "2").description == ""
    # Any source string is kept as given.
    mv3 = client.create_model_version(name, "s3://bucket/path/model", run_id=run_id)
    assert (mv3.version, mv3.source) == ("3", "s3://bucket/path/model")
    # Real MLflow answers the download URI of a version whose source is not `models:/<id>`
    # with the source itself, verbatim (a `runs:/` URI is not resolved to the run's artifacts).
    assert client.get_model_version_download_uri(name, "1") == f"runs:/{run_id}/model"
    assert client.get_model_version_download_uri(name, "3") == "s3://bucket/path/model"


def test_duplicate_registered_model(client):
    name = unique_name("duplicate")
    client.create_registered_model(name)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS", name, "already exists"):
        client.create_registered_model(name)


def test_invalid_registered_model_name(client):
    for bad in ("a/b", "a:b"):
        with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid model name", "cannot contain"):
            client.create_registered_model(unique_name("bad") + bad)


def test_missing_model_and_version(client, experiment_id):
    run_id = new_run(client, experiment_id)
    missing = unique_name("missing")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing, "not found"):
        client.get_registered_model(missing)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        client.update_registered_model(missing, description="x")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        client.rename_registered_model(missing, unique_name("other"))
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        client.delete_registered_model(missing)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", missing):
        client.create_model_version(missing, f"runs:/{run_id}/model", run_id=run_id)

    name = new_model(client, "one-version", run_id)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "version=2", "not found"):
        client.get_model_version(name, "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.update_model_version(name, "2", description="x")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.delete_model_version(name, "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.transition_model_version_stage(name, "2", "Staging")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.set_registered_model_alias(name, "champion", "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.get_model_version_download_uri(name, "2")
    # A version that is not a number.
    with raises_mlflow("INVALID_PARAMETER_VALUE", "version"):
        client.get_model_version(name, "abc")


def test_update_descriptions(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "describe", run_id, description="old")
    before = client.get_registered_model(name)
    tick()
    updated = client.update_registered_model(name, description="new")
    assert updated.description == "new"
    got = client.get_registered_model(name)
    assert got.description == "new"
    assert got.last_updated_timestamp > before.last_updated_timestamp
    mv = client.update_model_version(name, "1", description="version one")
    assert mv.description == "version one"
    assert client.get_model_version(name, "1").description == "version one"


def test_rename_registered_model(client, experiment_id):
    run_id = new_run(client, experiment_id)
    old = new_model(client, "rename-old", run_id, count=2, tags={"team": "risk"})
    client.set_registered_model_alias(old, "champion", "2")
    client.set_model_version_tag(old, "1", "k", "v")
    new = unique_name("rename-new")
    client.rename_registered_model(old, new)  # MlflowClient returns None

    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", old):
        client.get_registered_model(old)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(old, "1")
    got = client.get_registered_model(new)
    assert got.tags == {"team": "risk"}
    assert got.aliases == {"champion": "2"}
    # The versions follow the model, with their tags and aliases.
    mv1 = client.get_model_version(new, "1")
    assert (mv1.name, mv1.tags) == (new, {"k": "v"})
    assert client.get_model_version_by_alias(new, "champion").version == "2"
    assert versions(
        client.search_model_versions(f"name = '{new}'", order_by=["version_number ASC"])
    ) == ["1", "2"]
    assert client.search_model_versions(f"name = '{old}'") == []
    # The old name is free again; a taken name is refused.
    client.create_registered_model(old)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS", "already exists"):
        client.rename_registered_model(new, old)


def test_delete_registered_model(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "delete-model", run_id, count=2)
    client.set_registered_model_alias(name, "champion", "1")
    client.delete_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", name):
        client.get_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "1")
    assert client.search_model_versions(f"name = '{name}'") == []
    assert client.search_registered_models(f"name = '{name}'") == []
    # The name can be used again, and its versions start from 1.
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    assert mv.version == "1"
    assert client.get_registered_model(name).aliases == {}


def test_delete_model_version(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "delete-version", run_id, count=3)
    client.set_registered_model_alias(name, "champion", "3")
    client.delete_model_version(name, "3")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST", "version=3"):
        client.get_model_version(name, "3")
    assert versions(
        client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    ) == ["1", "2"]
    got = client.get_registered_model(name)
    assert versions(got.latest_versions) == ["2"]
    assert got.aliases == {}  # the alias went with its version
    # Version numbers are never reused.
    assert client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version == "4"


def test_registered_model_tags(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "model-tags", run_id, tags={"a": "1"})
    client.set_registered_model_tag(name, "b", "2")
    client.set_registered_model_tag(name, "a", "one")  # overwrite
    assert client.get_registered_model(name).tags == {"a": "one", "b": "2"}
    client.delete_registered_model_tag(name, "a")
    assert client.get_registered_model(name).tags == {"b": "2"}
    # Real MLflow: deleting a tag the model does not have is a no-op, not an error.
    client.delete_registered_model_tag(name, "never-set")
    assert client.get_registered_model(name).tags == {"b": "2"}
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_registered_model_tag(unique_name("missing"), "k", "v")


def test_model_version_tags(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "version-tags", run_id, count=2)
    client.set_model_version_tag(name, "1", "a", "1")
    client.set_model_version_tag(name, "1", "b", "2")
    client.set_model_version_tag(name, "1", "a", "one")
    assert client.get_model_version(name, "1").tags == {"a": "one", "b": "2"}
    assert client.get_model_version(name, "2").tags == {}
    client.delete_model_version_tag(name, "1", "a")
    assert client.get_model_version(name, "1").tags == {"b": "2"}
    client.delete_model_version_tag(name, "1", "never-set")  # no-op, as in real MLflow
    assert client.get_model_version(name, "1").tags == {"b": "2"}
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.set_model_version_tag(name, "9", "k", "v")


def test_aliases(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "aliases", run_id, count=2)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    client.set_registered_model_alias(name, "stable", "1")
    assert client.get_registered_model(name).aliases == {
        "champion": "1", "challenger": "2", "stable": "1"
    }
    assert sorted(client.get_model_version(name, "1").aliases) == ["champion", "stable"]
    assert client.get_model_version(name, "2").aliases == ["challenger"]
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert (by_alias.name, by_alias.version) == (name, "1")
    assert "champion" in by_alias.aliases

    # Setting an existing alias moves it.
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "1").aliases == ["stable"]
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger", "champion"]

    client.delete_registered_model_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {"challenger": "2", "stable": "1"}
    # Real MLflow: an unknown alias is INVALID_PARAMETER_VALUE, and deleting one is a no-op.
    with raises_mlflow("INVALID_PARAMETER_VALUE", "champion", "not found"):
        client.get_model_version_by_alias(name, "champion")
    client.delete_registered_model_alias(name, "champion")


def test_invalid_aliases(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "bad-alias", run_id)
    # `latest` (any case) and `v<digits>` (any case) are reserved: the server refuses them.
    for alias in ("latest", "LATEST", "v1", "V12"):
        with raises_mlflow("INVALID_PARAMETER_VALUE", "reserved"):
            client.set_registered_model_alias(name, alias, "1")
    # Characters outside [A-Za-z0-9_-] (the client refuses these before sending).
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_registered_model_alias(name, "two words", "1")
    assert client.get_registered_model(name).aliases == {}
    # Names that merely look like the reserved ones are fine.
    for alias in ("v1a", "latest-good", "version1"):
        client.set_registered_model_alias(name, alias, "1")
    assert sorted(client.get_registered_model(name).aliases) == ["latest-good", "v1a", "version1"]


def test_stage_transitions(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "stages", run_id, count=2)
    mv = client.transition_model_version_stage(name, "1", "Staging")
    assert (mv.version, mv.current_stage) == ("1", "Staging")
    # Stage names are case-insensitive and come back capitalised.
    mv = client.transition_model_version_stage(name, "1", "production")
    assert mv.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Production"
    assert client.transition_model_version_stage(name, "2", "archived").current_stage == "Archived"
    assert client.transition_model_version_stage(name, "2", "none").current_stage == "None"
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid Model Version stage"):
        client.transition_model_version_stage(name, "1", "Prod")
    assert client.get_model_version(name, "1").current_stage == "Production"


def test_archive_existing_versions(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "archive", run_id, count=4)
    client.transition_model_version_stage(name, "1", "Production")
    # Without archive_existing_versions, several versions can share a stage.
    client.transition_model_version_stage(name, "2", "Production")
    assert stages(client.search_model_versions(f"name = '{name}'")) == [
        ("1", "Production"), ("2", "Production"), ("3", "None"), ("4", "None")
    ]
    client.transition_model_version_stage(name, "3", "Staging")
    mv = client.transition_model_version_stage(
        name, "4", "Production", archive_existing_versions=True
    )
    assert mv.current_stage == "Production"
    # Every other version in the target stage is archived; other stages are untouched.
    assert stages(client.search_model_versions(f"name = '{name}'")) == [
        ("1", "Archived"), ("2", "Archived"), ("3", "Staging"), ("4", "Production")
    ]


def test_latest_versions(client, experiment_id):
    run_id = new_run(client, experiment_id)
    name = new_model(client, "latest", run_id, count=5)
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Production")
    client.transition_model_version_stage(name, "3", "Staging")
    client.transition_model_version_stage(name, "4", "Archived")
    # The newest version of each stage asked for.
    assert stages(client.get_latest_versions(name, ["Production"])) == [("2", "Production")]
    assert stages(client.get_latest_versions(name, ["Staging", "Production"])) == [
        ("2", "Production"), ("3", "Staging")
    ]
    assert stages(client.get_latest_versions(name, ["production"])) == [("2", "Production")]
    # No stages: the newest of every stage that has a version.
    expected = [("2", "Production"), ("3", "Staging"), ("4", "Archived"), ("5", "None")]
    assert stages(client.get_latest_versions(name)) == sorted(expected)
    assert stages(client.get_registered_model(name).latest_versions) == sorted(expected)
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid Model Version stage"):
        client.get_latest_versions(name, ["Prod"])
    empty = new_model(client, "latest-empty", run_id, count=0)
    assert client.get_latest_versions(empty, ["Production"]) == []


# ---------------------------------------------------------------------------------------
# Registry searches


def make_registered_models(client):
    """Five models named <prefix><suffix>, created in this order (distinct timestamps):

        suffix     tags
        alpha      team=a idx=0
        Beta       team=b idx=1
        gamma      team=a idx=2
        delta      team=b idx=3
        alphabet   team=a idx=4
    """
    prefix = unique_name("search") + "-"
    for i, suffix in enumerate(["alpha", "Beta", "gamma", "delta", "alphabet"]):
        client.create_registered_model(
            prefix + suffix, tags={"team": "a" if i % 2 == 0 else "b", "idx": str(i)}
        )
        tick()
    return prefix


def test_search_registered_models_by_name(client):
    p = make_registered_models(client)
    cases = {
        # Default order: name ascending, bytewise (upper case before lower case).
        f"name LIKE '{p}%'": ["Beta", "alpha", "alphabet", "delta", "gamma"],
        f"name = '{p}alpha'": ["alpha"],
        f"name != '{p}alpha' AND name LIKE '{p}%'": ["Beta", "alphabet", "delta", "gamma"],
        f"name LIKE '{p}alpha%'": ["alpha", "alphabet"],
        f"name LIKE '{p}b%'": [],  # LIKE is case-sensitive
        f"name ILIKE '{p}b%'": ["Beta"],
        f"name LIKE '{p}_____'": ["alpha", "delta", "gamma"],
        f"name IN ('{p}alpha', '{p}gamma', '{p}nope')": ["alpha", "gamma"],
        f"name NOT IN ('{p}alpha') AND name LIKE '{p}%'": ["Beta", "alphabet", "delta", "gamma"],
        f"name = '{p}nope'": [],
    }
    for filter_string, expected in cases.items():
        assert model_names(client.search_registered_models(filter_string), p) == expected, (
            filter_string
        )
        fluent = mlflow.search_registered_models(filter_string=filter_string)
        assert model_names(fluent, p) == expected, filter_string


def test_search_registered_models_by_tag(client):
    p = make_registered_models(client)
    scope = f"name LIKE '{p}%'"
    cases = {
        "tags.team = 'a'": ["alpha", "alphabet", "gamma"],
        "tag.team = 'a'": ["alpha", "alphabet", "gamma"],
        "tags.team != 'a'": ["Beta", "delta"],
        "tags.idx LIKE '%1%'": ["Beta"],
        "tags.team ILIKE 'B'": ["Beta", "delta"],
        "tags.`team` = 'b' AND tags.idx = '3'": ["delta"],
        "tags.nope = 'x'": [],
    }
    for clause, expected in cases.items():
        found = client.search_registered_models(f"{scope} AND {clause}")
        assert model_names(found, p) == expected, clause


def test_search_registered_models_order_by(client):
    p = make_registered_models(client)
    scope = f"name LIKE '{p}%'"

    def search(order_by):
        return model_names(client.search_registered_models(scope, order_by=order_by), p)

    # Real MLflow (3.17.2) orders registered models by `name`, `last_updated_timestamp` and the
    # legacy `timestamp` only: it refuses `creation_timestamp`, which the reference lists (§4.3),
    # so that key is not tested.
    assert search(["name DESC"]) == ["gamma", "delta", "alphabet", "alpha", "Beta"]
    assert search(["name ASC"]) == ["Beta", "alpha", "alphabet", "delta", "gamma"]
    assert search(["name"]) == ["Beta", "alpha", "alphabet", "delta", "gamma"]
    assert search(["last_updated_timestamp DESC"]) == [
        "alphabet", "delta", "gamma", "Beta", "alpha"
    ]
    assert search(["last_updated_timestamp ASC"]) == [
        "alpha", "Beta", "gamma", "delta", "alphabet"
    ]
    # An update moves a model to the front of last_updated_timestamp DESC.
    client.update_registered_model(p + "Beta", description="touched")
    assert search(["last_updated_timestamp DESC"])[0] == "Beta"
    assert model_names(
        mlflow.search_registered_models(filter_string=scope, order_by=["name DESC"]), p
    ) == ["gamma", "delta", "alphabet", "alpha", "Beta"]


def test_search_registered_models_paging(client):
    p = make_registered_models(client)
    scope = f"name LIKE '{p}%'"
    seen, token, pages = [], None, 0
    while True:
        page = client.search_registered_models(scope, max_results=2, page_token=token)
        pages += 1
        assert len(page) == (2 if pages < 3 else 1)
        seen += model_names(page, p)
        token = page.token
        if not token:
            break
    assert pages == 3
    assert seen == ["Beta", "alpha", "alphabet", "delta", "gamma"]
    # A page exactly as large as what is left has no next token.
    page = client.search_registered_models(scope, max_results=5)
    assert len(page) == 5
    assert not page.token
    # Paging also follows order_by.
    page1 = client.search_registered_models(scope, max_results=3, order_by=["name DESC"])
    page2 = client.search_registered_models(
        scope, max_results=3, order_by=["name DESC"], page_token=page1.token
    )
    assert model_names(page1, p) + model_names(page2, p) == [
        "gamma", "delta", "alphabet", "alpha", "Beta"
    ]
    assert not page2.token


def create_model_over_rest(tracking_uri, name, tags):
    """Creates a registered model through the REST API (the client refuses to create one that
    carries the `mlflow.prompt.is_prompt` tag)."""
    resp = requests.post(
        f"{tracking_uri}/api/2.0/mlflow/registered-models/create",
        json={"name": name, "tags": [{"key": k, "value": v} for k, v in tags.items()]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def rest_search_registered_models(tracking_uri, filter_string):
    resp = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/registered-models/search",
        params={"filter": filter_string, "max_results": 100},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return [m["name"] for m in resp.json().get("registered_models", [])]


def test_search_registered_models_excludes_prompts(client, tracking_uri):
    p = unique_name("prompts") + "-"
    client.create_registered_model(p + "model")
    client.create_registered_model(p + "other", tags={"team": "a"})
    create_model_over_rest(tracking_uri, p + "prompt", {"mlflow.prompt.is_prompt": "true"})
    create_model_over_rest(tracking_uri, p + "not-prompt", {"mlflow.prompt.is_prompt": "false"})
    # The client appends `AND tag.`mlflow.prompt.is_prompt` != 'true'` to every filter: models
    # without the tag must match it (`!=` is true when the tag is missing here).
    expected = ["model", "not-prompt", "other"]
    assert model_names(client.search_registered_models(f"name LIKE '{p}%'"), p) == expected
    assert model_names(mlflow.search_registered_models(filter_string=f"name LIKE '{p}%'"), p) == (
        expected
    )
    assert model_names(
        client.search_registered_models(f"name LIKE '{p}%' AND tags.team = 'a'"), p
    ) == ["other"]
    # Asking for prompts explicitly (as the prompt registry does, over REST) finds only them.
    assert rest_search_registered_models(
        tracking_uri, f"name LIKE '{p}%' AND tags.`mlflow.prompt.is_prompt` = 'true'"
    ) == [p + "prompt"]


def test_rest_search_registered_models_excludes_prompts_by_default(tracking_uri):
    # Real MLflow: the server itself leaves prompts out of a registered-model search unless the
    # filter asks for them (`tags.`mlflow.prompt.is_prompt` = 'true'`), even when the filter
    # does not mention the tag at all.
    p = unique_name("prompts-rest") + "-"
    create_model_over_rest(tracking_uri, p + "model", {})
    create_model_over_rest(tracking_uri, p + "prompt", {"mlflow.prompt.is_prompt": "true"})
    assert rest_search_registered_models(tracking_uri, f"name LIKE '{p}%'") == [p + "model"]


def make_versions(client, experiment_id):
    """Model A with versions 1..4 (runs r1, r1, r2, r2; version tag r=<run>, v2 also good=yes),
    then model B with version 1 (run r2). Returns (A, B, r1, r2)."""
    r1 = new_run(client, experiment_id)
    r2 = new_run(client, experiment_id)
    prefix = unique_name("mv-search") + "-"
    a, b = prefix + "a", prefix + "b"
    client.create_registered_model(a)
    client.create_registered_model(b)
    for run_id in (r1, r1, r2, r2):
        client.create_model_version(a, f"runs:/{run_id}/model", run_id=run_id, tags={"r": run_id})
        tick()
    client.create_model_version(b, f"runs:/{r2}/model", run_id=r2)
    client.set_model_version_tag(a, "2", "good", "yes")
    return a, b, r1, r2


def test_search_model_versions_filters(client, experiment_id):
    a, b, r1, r2 = make_versions(client, experiment_id)
    order = ["name ASC", "version_number DESC"]
    cases = {
        f"name = '{a}'": [(a, "4"), (a, "3"), (a, "2"), (a, "1")],
        f"name='{b}'": [(b, "1")],
        f"name LIKE '{a[:-1]}%'": [(a, "4"), (a, "3"), (a, "2"), (a, "1"), (b, "1")],
        f"run_id = '{r1}'": [(a, "2"), (a, "1")],
        f"run_id = '{r2}'": [(a, "4"), (a, "3"), (b, "1")],
        f"run_id IN ('{r1}', '{r2}')": [(a, "4"), (a, "3"), (a, "2"), (a, "1"), (b, "1")],
        f"name = '{a}' AND run_id != '{r1}'": [(a, "4"), (a, "3")],
        f"name = '{a}' AND version_number > 2": [(a, "4"), (a, "3")],
        f"name = '{a}' AND version_number >= 2": [(a, "4"), (a, "3"), (a, "2")],
        f"name = '{a}' AND version_number < 2": [(a, "1")],
        f"name = '{a}' AND version_number <= 2": [(a, "2"), (a, "1")],
        f"name = '{a}' AND version_number = 3": [(a, "3")],
        f"name = '{a}' AND version_number != 3": [(a, "4"), (a, "2"), (a, "1")],
        f"name = '{a}' AND tags.good = 'yes'": [(a, "2")],
        f"name = '{a}' AND tags.r = '{r2}'": [(a, "4"), (a, "3")],
        f"name = '{a}' AND tags.nope = 'x'": [],
        f"source_path = 'runs:/{r1}/model'": [(a, "2"), (a, "1")],
    }
    for filter_string, expected in cases.items():
        found = client.search_model_versions(filter_string, order_by=order)
        assert [(mv.name, mv.version) for mv in found] == expected, filter_string
        fluent = mlflow.search_model_versions(filter_string=filter_string, order_by=order)
        assert [(mv.name, mv.version) for mv in fluent] == expected, filter_string


def test_search_model_versions_order_and_paging(client, experiment_id):
    a, _, _, _ = make_versions(client, experiment_id)
    scope = f"name = '{a}'"

    def search(**kwargs):
        return versions(client.search_model_versions(scope, **kwargs))

    assert search(order_by=["version_number DESC"]) == ["4", "3", "2", "1"]
    assert search(order_by=["version_number ASC"]) == ["1", "2", "3", "4"]
    assert search(order_by=["creation_timestamp DESC"]) == ["4", "3", "2", "1"]
    # Real MLflow: the default order is last_updated_timestamp DESC, then name ASC and
    # version_number DESC (the reference, §4.3, gives only the last two), so updating a
    # version brings it to the front.
    assert search() == ["4", "3", "2", "1"]
    tick()
    client.update_model_version(a, "2", description="touched")
    assert search() == ["2", "4", "3", "1"]
    assert search(order_by=["last_updated_timestamp DESC"]) == ["2", "4", "3", "1"]

    page1 = client.search_model_versions(scope, max_results=3, order_by=["version_number ASC"])
    assert versions(page1) == ["1", "2", "3"]
    assert page1.token
    page2 = client.search_model_versions(
        scope, max_results=3, order_by=["version_number ASC"], page_token=page1.token
    )
    assert versions(page2) == ["4"]
    assert not page2.token
    fluent = mlflow.search_model_versions(
        max_results=2, filter_string=scope, order_by=["version_number DESC"]
    )
    assert versions(fluent) == ["4", "3"]


def test_invalid_registry_searches(client):
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid attribute key"):
        client.search_registered_models("foo = 'x'")
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid comparator"):
        client.search_registered_models("name > 'a'")
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid order by key"):
        client.search_registered_models(order_by=["version_number DESC"])
    with raises_mlflow("INVALID_PARAMETER_VALUE", "Invalid attribute key"):
        client.search_model_versions("current_stage = 'Production'")
    # Real MLflow words this one "Invalid attribute key 'nope' specified".
    with raises_mlflow("INVALID_PARAMETER_VALUE", "nope"):
        client.search_model_versions("name = 'x'", order_by=["nope DESC"])


# ---------------------------------------------------------------------------------------
# Quiver only: deployments, the deployment guard, registry events, the CLI.
#
# Not MLflow: these tests skip unless the server answers GET /api/2.0/quiver/deployments
# (MLflow answers 404). The REST shapes:
#   POST   /api/2.0/quiver/deployments {name, model_name, version? | alias?, target, description?}
#          -> {"deployment": {name, model_name, version?, alias?, resolved_version, target, ...}}
#   GET    /api/2.0/quiver/deployments -> {"deployments": [...]}
#   DELETE /api/2.0/quiver/deployments/{name} -> {}
#   GET    /api/2.0/quiver/registry-events?name=M -> {"events": [{seq, time, user_id, action,
#          model_name, version, key, before, after}]}
# While a deployment serves a version (named directly or through an alias), deleting that
# version, its registered model or its run fails with INVALID_STATE and a message naming the
# deployment; the server answers it with a 4xx (a 5xx would be retried by the client and
# reported as INTERNAL_ERROR).

DEPLOYMENTS = "/api/2.0/quiver/deployments"


@pytest.fixture(scope="module")
def quiver(tracking_uri):
    """The server's URL when it is `quiver server` (it serves deployments); skips otherwise."""
    try:
        resp = requests.get(tracking_uri + DEPLOYMENTS, timeout=10)
    except requests.RequestException as e:
        pytest.skip(f"GET {DEPLOYMENTS} failed ({e}): not a Quiver server")
    if resp.status_code == 404:
        pytest.skip(f"GET {DEPLOYMENTS} answered 404: not a Quiver server")
    return tracking_uri


@pytest.fixture
def quiver_bin(quiver):
    """The `quiver` binary under test, from $QUIVER_BIN; skips when unset."""
    path = os.environ.get("QUIVER_BIN")
    if not path:
        pytest.skip("QUIVER_BIN is not set")
    return path


def create_deployment(url, name, model_name, target="k8s/test", **fields):
    body = {"name": name, "model_name": model_name, "target": target, **fields}
    return requests.post(url + DEPLOYMENTS, json=body, timeout=30)


def deploy(url, name, model_name, **fields):
    resp = create_deployment(url, name, model_name, **fields)
    assert resp.status_code == 200, resp.text
    return resp.json()["deployment"]


def list_deployments(url):
    resp = requests.get(url + DEPLOYMENTS, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json().get("deployments", [])


def delete_deployment(url, name):
    return requests.delete(f"{url}{DEPLOYMENTS}/{name}", timeout=30)


def undeploy(url, name):
    resp = delete_deployment(url, name)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}


def assert_rest_error(resp, error_code, *phrases):
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error_code"] == error_code, body
    for phrase in phrases:
        assert phrase in body["message"], (phrase, body)


def guarded(deployment_name):
    """A `with` block that must be refused by the deployment guard."""
    return raises_mlflow("INVALID_STATE", deployment_name)


def run_cli(quiver_bin, *args):
    proc = subprocess.run(
        [quiver_bin, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


class TestQuiverOnly:
    """Quiver's deployment records, deployment guard, registry history and CLI (skipped
    against MLflow)."""

    def test_deployment_rest_round_trip(self, quiver, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "deploy", run_id, count=2)
        name = unique_name("dep")
        d = deploy(quiver, name, model, version="2", target="k8s/prod-eu", description="eu")
        assert (d["name"], d["model_name"], d["version"], d["target"]) == (
            name, model, "2", "k8s/prod-eu"
        )
        assert d["resolved_version"] == "2"
        assert d["description"] == "eu"
        assert "alias" not in d or not d["alias"]
        assert d["creation_timestamp"] > 0
        listed = {x["name"]: x for x in list_deployments(quiver)}
        assert listed[name]["model_name"] == model
        assert listed[name]["resolved_version"] == "2"
        undeploy(quiver, name)
        assert name not in {x["name"] for x in list_deployments(quiver)}

    def test_deployment_errors(self, quiver, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "deploy-errors", run_id)
        name = unique_name("dep")
        deploy(quiver, name, model, version="1")
        assert_rest_error(
            create_deployment(quiver, name, model, version="1"), "RESOURCE_ALREADY_EXISTS", name
        )
        other = unique_name("dep")
        assert_rest_error(
            create_deployment(quiver, other, unique_name("no-model"), version="1"),
            "RESOURCE_DOES_NOT_EXIST",
        )
        assert_rest_error(
            create_deployment(quiver, other, model, version="7"), "RESOURCE_DOES_NOT_EXIST"
        )
        # An unknown alias: either code (MLflow's GetModelVersionByAlias answers
        # INVALID_PARAMETER_VALUE; "does not exist" is as natural here), with the alias named.
        resp = create_deployment(quiver, other, model, alias="nobody")
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
        assert resp.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
        assert "nobody" in resp.json()["message"]
        # Exactly one of version and alias.
        assert_rest_error(create_deployment(quiver, other, model), "INVALID_PARAMETER_VALUE")
        client.set_registered_model_alias(model, "champion", "1")
        assert_rest_error(
            create_deployment(quiver, other, model, version="1", alias="champion"),
            "INVALID_PARAMETER_VALUE",
        )
        assert_rest_error(delete_deployment(quiver, other), "RESOURCE_DOES_NOT_EXIST", other)
        undeploy(quiver, name)

    def test_guard_refuses_deletes_of_a_deployed_version(self, quiver, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "guard", run_id, count=2)
        name = unique_name("dep")
        deploy(quiver, name, model, version="1")
        with guarded(name):
            client.delete_model_version(model, "1")
        with guarded(name):
            client.delete_registered_model(model)
        with guarded(name):
            client.delete_run(run_id)
        # Nothing was deleted.
        assert client.get_model_version(model, "1").version == "1"
        assert client.get_run(run_id).info.lifecycle_stage == "active"
        # Versions the deployment does not serve can still go; the model keeps the served one.
        client.delete_model_version(model, "2")
        undeploy(quiver, name)
        client.delete_model_version(model, "1")
        client.delete_run(run_id)
        client.delete_registered_model(model)
        with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
            client.get_registered_model(model)

    def test_guard_follows_an_alias(self, quiver, client, experiment_id):
        r1 = new_run(client, experiment_id)
        r2 = new_run(client, experiment_id)
        model = unique_name("guard-alias")
        client.create_registered_model(model)
        client.create_model_version(model, f"runs:/{r1}/model", run_id=r1)
        client.create_model_version(model, f"runs:/{r2}/model", run_id=r2)
        client.set_registered_model_alias(model, "champion", "1")
        name = unique_name("dep")
        d = deploy(quiver, name, model, alias="champion")
        assert (d["alias"], d["resolved_version"]) == ("champion", "1")
        assert "version" not in d or not d["version"]
        with guarded(name):
            client.delete_model_version(model, "1")
        with guarded(name):
            client.delete_run(r1)
        # Moving the alias moves what the deployment serves, and what the guard protects.
        client.set_registered_model_alias(model, "champion", "2")
        listed = {x["name"]: x for x in list_deployments(quiver)}
        assert listed[name]["resolved_version"] == "2"
        with guarded(name):
            client.delete_model_version(model, "2")
        with guarded(name):
            client.delete_run(r2)
        client.delete_model_version(model, "1")
        client.delete_run(r1)
        with guarded(name):
            client.delete_registered_model(model)
        undeploy(quiver, name)
        client.delete_registered_model(model)

    def test_guard_protects_the_logged_model(self, quiver, client):
        model = unique_name("guard-logged")
        run_id, info = log_multiplier(2, registered_model_name=model)
        name = unique_name("dep")
        deploy(quiver, name, model, version="1")
        with guarded(name):
            client.delete_logged_model(info.model_id)
        with guarded(name):
            client.delete_run(run_id)
        assert predict(f"models:/{model}/1") == doubled_by(2)
        undeploy(quiver, name)
        client.delete_logged_model(info.model_id)

    def test_deployment_follows_a_rename(self, quiver, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "deploy-rename", run_id)
        name = unique_name("dep")
        deploy(quiver, name, model, version="1")
        renamed = unique_name("deploy-renamed")
        client.rename_registered_model(model, renamed)
        listed = {x["name"]: x for x in list_deployments(quiver)}
        assert listed[name]["model_name"] == renamed
        with guarded(name):
            client.delete_registered_model(renamed)
        undeploy(quiver, name)
        client.delete_registered_model(renamed)

    def test_registry_events(self, quiver, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "events", run_id)
        client.transition_model_version_stage(model, "1", "Production")
        client.set_registered_model_alias(model, "champion", "1")
        client.set_registered_model_tag(model, "team", "risk")
        name = unique_name("dep")
        deploy(quiver, name, model, alias="champion")
        undeploy(quiver, name)

        resp = requests.get(
            quiver + "/api/2.0/quiver/registry-events", params={"name": model}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        events = resp.json()["events"]
        assert all(e["model_name"] == model for e in events)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [e["action"] for e in events] == [
            "create_registered_model",
            "create_model_version",
            "transition_stage",
            "set_alias",
            "set_registered_model_tag",
            "create_deployment",
            "delete_deployment",
        ]
        by_action = {e["action"]: e for e in events}
        stage = by_action["transition_stage"]
        assert (stage["version"], stage["before"], stage["after"]) == ("1", "None", "Production")
        alias = by_action["set_alias"]
        assert (alias["key"], alias["after"]) == ("champion", "1")
        tag = by_action["set_registered_model_tag"]
        assert (tag["key"], tag["after"]) == ("team", "risk")
        assert by_action["create_deployment"]["key"] == name
        assert by_action["delete_deployment"]["key"] == name
        assert all(e["time"] > 0 for e in events)

    def test_cli_deployment_guards_rest_deletes(self, quiver, quiver_bin, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "cli-guard", run_id)
        name = unique_name("cli-dep")
        out = run_cli(
            quiver_bin, "deployments", "create", name, "--model", model, "--version", "1",
            "--target", "k8s/cli", "--url", quiver,
        )
        assert name in out
        assert name in run_cli(quiver_bin, "deployments", "list", "--url", quiver)
        listed = {x["name"]: x for x in list_deployments(quiver)}
        assert (listed[name]["model_name"], listed[name]["target"]) == (model, "k8s/cli")
        with guarded(name):
            client.delete_model_version(model, "1")
        with guarded(name):
            client.delete_registered_model(model)
        with guarded(name):
            client.delete_run(run_id)
        run_cli(quiver_bin, "deployments", "delete", name, "--url", quiver)
        assert name not in {x["name"] for x in list_deployments(quiver)}
        client.delete_model_version(model, "1")
        client.delete_registered_model(model)

    def test_cli_models_history(self, quiver, quiver_bin, client, experiment_id):
        run_id = new_run(client, experiment_id)
        model = new_model(client, "cli-history", run_id)
        client.transition_model_version_stage(model, "1", "Production")
        out = run_cli(quiver_bin, "models", "history", model, "--url", quiver)
        assert "create_model_version" in out
        assert "transition_stage" in out
        assert "Production" in out
