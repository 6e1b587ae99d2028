"""Error cases: the client must raise MlflowException with MLflow's error_code and a message
containing MLflow's key phrase.

The server answers with HTTP 4xx and `{"error_code": "...", "message": "..."}`; the client
turns that into `mlflow.exceptions.RestException` (a subclass of MlflowException) whose
`error_code` is the body's error_code and whose message is "<error_code>: <message>".
"""

import uuid

import mlflow
from mlflow.entities import Metric, Param

from conftest import raises_mlflow, unique_name


def raises(error_code, phrase):
    """Checks the exception of a `with` block: its class, error_code and message."""
    return raises_mlflow(error_code, phrase)


def test_changing_param_value(client):
    with mlflow.start_run() as run:
        mlflow.log_param("p", "v")
        with raises("INVALID_PARAMETER_VALUE", "Changing param values is not allowed"):
            mlflow.log_param("p", "other")
        # log-batch (log_params) reports the same error.
        with raises("INVALID_PARAMETER_VALUE", "Changing param values is not allowed"):
            mlflow.log_params({"p": "third"})
        with raises("INVALID_PARAMETER_VALUE", "Changing param values is not allowed"):
            client.log_batch(run.info.run_id, params=[Param("p", "fourth")])
        mlflow.log_param("p", "v")  # the original value is still accepted
    assert client.get_run(run.info.run_id).data.params == {"p": "v"}


def test_unknown_run_id(client):
    missing = uuid.uuid4().hex
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.get_run(missing)
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.log_param(missing, "p", "v")
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.log_metric(missing, "m", 1.0)
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.set_tag(missing, "t", "v")
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.log_batch(missing, metrics=[Metric("m", 1.0, 0, 0)])
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        client.delete_run(missing)
    with raises("RESOURCE_DOES_NOT_EXIST", "not found"):
        mlflow.start_run(run_id=missing)
    assert mlflow.active_run() is None


def test_logging_to_deleted_run(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "before", "ok")
    client.delete_run(run_id)
    phrase = "must be in the 'active' state"
    with raises("INVALID_PARAMETER_VALUE", phrase):
        client.log_param(run_id, "p", "v")
    with raises("INVALID_PARAMETER_VALUE", phrase):
        client.log_metric(run_id, "m", 1.0)
    with raises("INVALID_PARAMETER_VALUE", phrase):
        client.set_tag(run_id, "t", "v")
    with raises("INVALID_PARAMETER_VALUE", phrase):
        client.log_batch(run_id, metrics=[Metric("m", 1.0, 0, 0)])
    # Reading a deleted run still works; nothing was written.
    data = client.get_run(run_id).data
    assert data.params == {"before": "ok"}
    assert data.metrics == {}
    assert "t" not in data.tags


def test_duplicate_experiment_name(client):
    name = unique_name("compat-dup")
    client.create_experiment(name)
    with raises("RESOURCE_ALREADY_EXISTS", name):
        client.create_experiment(name)
    # The name stays taken while the experiment is deleted.
    client.delete_experiment(client.get_experiment_by_name(name).experiment_id)
    with raises("RESOURCE_ALREADY_EXISTS", name):
        client.create_experiment(name)

