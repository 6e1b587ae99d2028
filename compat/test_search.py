"""Searches through the real MLflow client: `mlflow.search_runs` (pandas) and
`MlflowClient().search_runs` with MLflow's filter grammar, order_by, run_view_type and page
tokens; `mlflow.search_experiments` and `MlflowClient().search_experiments`.

Expected values are what a real `mlflow server` (3.17, SQLite store) returns. Every test
builds its runs in its own experiment, with explicit start times, and asserts the exact
result in order. Experiment searches are global, so their tests scope every filter to
experiments named with the test's own unique prefix.
"""

import time

import mlflow
import mlflow.tracking.fluent as fluent
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, ViewType

from conftest import raises_mlflow, unique_name


def new_run(client, experiment_id, name, start_time=None):
    """Creates a run (RUNNING) and returns its id."""
    return client.create_run(experiment_id, start_time=start_time, run_name=name).info.run_id


def ids(runs):
    return [r.info.run_id for r in runs]


def names(runs):
    return [r.info.run_name for r in runs]


def df_names(df):
    """Run names of a `mlflow.search_runs` DataFrame, in its row order."""
    if len(df) == 0:
        return []
    return list(df["tags.mlflow.runName"])


def search_both(client, experiment_id, filter_string="", order_by=None, **kwargs):
    """Runs one search through `MlflowClient().search_runs` and `mlflow.search_runs`, checks
    that both return the same runs in the same order, and returns the run names."""
    listed = client.search_runs(
        [experiment_id], filter_string, order_by=order_by, **kwargs
    )
    df = mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string=filter_string, order_by=order_by, **kwargs
    )
    assert isinstance(df, pd.DataFrame)
    assert (list(df["run_id"]) if len(df) else []) == ids(listed), filter_string
    assert df_names(df) == names(listed), filter_string
    return names(listed)


def raises_invalid(*phrases):
    """A `with` block that must raise MlflowException INVALID_PARAMETER_VALUE whose message
    contains every one of `phrases`."""
    return raises_mlflow("INVALID_PARAMETER_VALUE", *phrases)


@pytest.fixture(scope="module")
def server_is_quiver(tracking_uri):
    """True when the server under test is `quiver server` (it answers Quiver's SQL endpoint)."""
    try:
        resp = requests.post(
            f"{tracking_uri}/api/2.0/quiver/sql", json={"query": "SELECT 1"}, timeout=10
        )
    except requests.RequestException:
        return False
    return resp.status_code == 200


# ---------------------------------------------------------------------------------------
# A shared set of runs for the filter and order_by tests.
#
#   name     start user   status    params                  metrics (latest)
#   alpha    b+0   alice  FINISHED  lr=0.1  optimizer=Adam  loss=0.5 acc=0.9 `val loss`=0.7
#   beta     b+1s  alice  FAILED    lr=0.01 optimizer=adam  loss=0.3 acc=0.8
#   gamma    b+2s  bob    RUNNING   lr=0.1  optimizer=SGD   loss=2.0 `val loss`=1.5
#   delta    b+3s  bob    KILLED    batch=32                loss=0.3
#   Alpha-2  b+4s  carol  FINISHED  -                       -
#
# tags: alpha team=Vision, `my tag`="x y", stage=dev, q=it's; beta team=vision;
#       gamma team=nlp, stage=prod; delta and Alpha-2 none (besides mlflow.* tags).
#
# alpha's loss was 5.0 at step 0 and is 0.5 at step 1: searches see the latest value.
# Every run but gamma has end_time = its start + 500 ms; gamma (still RUNNING) has none.
# Default order (start_time DESC): Alpha-2, delta, gamma, beta, alpha.

ALL = ["Alpha-2", "delta", "gamma", "beta", "alpha"]


def make_runs(client, experiment_id):
    base = int(time.time() * 1000) - 3_600_000
    specs = [
        ("alpha", "alice", "FINISHED", {"lr": "0.1", "optimizer": "Adam"},
         {"loss": 0.5, "acc": 0.9, "val loss": 0.7},
         {"team": "Vision", "my tag": "x y", "stage": "dev", "q": "it's"}),
        ("beta", "alice", "FAILED", {"lr": "0.01", "optimizer": "adam"},
         {"loss": 0.3, "acc": 0.8}, {"team": "vision"}),
        ("gamma", "bob", None, {"lr": "0.1", "optimizer": "SGD"},
         {"loss": 2.0, "val loss": 1.5}, {"team": "nlp", "stage": "prod"}),
        ("delta", "bob", "KILLED", {"batch": "32"}, {"loss": 0.3}, {}),
        ("Alpha-2", "carol", "FINISHED", {}, {}, {}),
    ]
    runs = {}
    for i, (name, user, status, params, metrics, tags) in enumerate(specs):
        start = base + 1000 * i
        run = client.create_run(
            experiment_id, start_time=start, run_name=name, tags={"mlflow.user": user}
        )
        run_id = run.info.run_id
        if name == "alpha":
            client.log_metric(run_id, "loss", 5.0, timestamp=start + 10, step=0)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, start + 20, 1) for k, v in metrics.items()],
            synchronous=True,
        )
        for k, v in params.items():
            client.log_param(run_id, k, v)
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
        if status is not None:
            client.set_terminated(run_id, status, end_time=start + 500)
        runs[name] = client.get_run(run_id)
    return base, runs


# ---------------------------------------------------------------------------------------
# Filters


def test_filter_metrics(client, experiment_id):
    make_runs(client, experiment_id)
    cases = {
        "": ALL,
        "metrics.loss = 0.3": ["delta", "beta"],
        "metrics.loss != 0.3": ["gamma", "alpha"],  # a run without the metric never matches
        "metrics.loss < 0.5": ["delta", "beta"],
        "metrics.loss <= 0.5": ["delta", "beta", "alpha"],
        "metrics.loss > 0.5": ["gamma"],
        "metrics.loss >= 0.5": ["gamma", "alpha"],
        "metrics.loss > 1": ["gamma"],  # an integer literal
        "metrics.loss >= 2": ["gamma"],
        "metrics.loss > 4": [],  # alpha's 5.0 is not its latest value
        "metric.acc > 0.85": ["alpha"],
        "metrics.acc < 100": ["beta", "alpha"],
        "metrics.`val loss` < 1": ["alpha"],
        'metrics."val loss" >= 0.7': ["gamma", "alpha"],
        "metrics.nope > 0": [],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_filter_params(client, experiment_id):
    make_runs(client, experiment_id)
    cases = {
        "params.lr = '0.1'": ["gamma", "alpha"],
        'params.lr = "0.01"': ["beta"],
        "param.lr = '0.01'": ["beta"],
        "parameters.lr = '0.01'": ["beta"],
        "params.lr != '0.1'": ["beta"],  # runs without the param never match
        "params.optimizer = 'adam'": ["beta"],  # = is case-sensitive
        "params.optimizer LIKE 'a%'": ["beta"],  # LIKE is case-sensitive
        "params.optimizer LIKE 'A%'": ["alpha"],
        "params.optimizer LIKE '%dam'": ["beta", "alpha"],
        "params.optimizer LIKE 'S_D'": ["gamma"],
        "params.optimizer like 'S%'": ["gamma"],
        "params.optimizer ILIKE 'a%'": ["beta", "alpha"],
        "params.optimizer ILIKE '%D%'": ["gamma", "beta", "alpha"],
        "params.batch IS NULL": ["Alpha-2", "gamma", "beta", "alpha"],
        "params.batch IS NOT NULL": ["delta"],
        "params.lr IS NOT NULL": ["gamma", "beta", "alpha"],
        "params.lr is null": ["Alpha-2", "delta"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_filter_tags(client, experiment_id):
    make_runs(client, experiment_id)
    cases = {
        "tags.team = 'vision'": ["beta"],
        'tag.team = "Vision"': ["alpha"],
        "tags.team != 'vision'": ["gamma", "alpha"],
        "tags.team LIKE 'V%'": ["alpha"],
        "tags.team LIKE '%o%'": ["beta", "alpha"],
        "tags.team ILIKE 'V%'": ["beta", "alpha"],
        "tags.team IS NULL": ["Alpha-2", "delta"],
        "tags.team IS NOT NULL": ["gamma", "beta", "alpha"],
        "tags.`my tag` = 'x y'": ["alpha"],
        'tags."my tag" LIKE \'%y\'': ["alpha"],
        'tags.q = "it\'s"': ["alpha"],
        "tags.stage != 'dev'": ["gamma"],
        'tags."mlflow.runName" = \'gamma\'': ["gamma"],
        "tags.`mlflow.runName` ILIKE 'alpha%'": ["Alpha-2", "alpha"],
        "tags.`mlflow.runName` LIKE 'alpha%'": ["alpha"],
        "tags.`mlflow.user` = 'bob'": ["delta", "gamma"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_filter_quoted_values_are_verbatim(client, experiment_id):
    """A quoted value is the text between its outer quotes, as it is: MLflow does not
    unescape doubled quotes or backslashes inside it."""
    values = {"plain": "it's", "doubled": "it''s", "backslashed": 'say \\"hi\\"'}
    base = int(time.time() * 1000) - 3_600_000
    for i, (name, value) in enumerate(values.items()):
        run_id = new_run(client, experiment_id, name, base + 1000 * i)
        client.set_tag(run_id, "v", value)
    assert client.get_run(run_id).data.tags["v"] == 'say \\"hi\\"'
    cases = {
        'tags.v = "it\'s"': ["plain"],
        "tags.v = 'it''s'": ["doubled"],
        'tags.v = "say \\"hi\\""': ["backslashed"],
        "tags.v LIKE 'it%'": ["doubled", "plain"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_filter_attributes(client, experiment_id):
    base, runs = make_runs(client, experiment_id)
    rid = {name: run.info.run_id for name, run in runs.items()}
    cases = {
        "attributes.run_name = 'beta'": ["beta"],
        "run_name = 'beta'": ["beta"],
        "attribute.run_name != 'beta'": ["Alpha-2", "delta", "gamma", "alpha"],
        "attributes.run_name LIKE 'Alpha%'": ["Alpha-2"],
        "attributes.run_name ILIKE 'alpha%'": ["Alpha-2", "alpha"],
        '`Run name` = "delta"': ["delta"],
        'attributes."status" = \'KILLED\'': ["delta"],
        "attributes.`user_id` = 'carol'": ["Alpha-2"],
        f"attributes.run_id = '{rid['gamma']}'": ["gamma"],
        f"attributes.run_id IN ('{rid['gamma']}', '{rid['alpha']}')": ["gamma", "alpha"],
        f'attributes.run_id IN ("{rid["beta"]}")': ["beta"],
        f"attributes.run_id NOT IN ('{rid['gamma']}', '{rid['alpha']}')": [
            "Alpha-2", "delta", "beta"],
        "attributes.status = 'FAILED'": ["beta"],
        "status = 'RUNNING'": ["gamma"],
        "attributes.status != 'FINISHED'": ["delta", "gamma", "beta"],
        "attributes.status LIKE 'FIN%'": ["Alpha-2", "alpha"],
        "attributes.user_id = 'alice'": ["beta", "alpha"],
        "attributes.user_id != 'alice'": ["Alpha-2", "delta", "gamma"],
        "user_id ILIKE 'B%'": ["delta", "gamma"],
        f"attributes.start_time >= {base + 1000} AND attributes.start_time < {base + 3000}": [
            "gamma", "beta"],
        f"start_time = {base + 3000}": ["delta"],
        f"attributes.start_time != {base + 3000}": ["Alpha-2", "gamma", "beta", "alpha"],
        f"attributes.start_time > {base + 4000}": [],
        f"attributes.start_time <= {base}": ["alpha"],
        f"attributes.end_time <= {base + 1500}": ["beta", "alpha"],
        f"attributes.end_time > {base + 1500}": ["Alpha-2", "delta"],  # gamma has no end_time
        f"attributes.artifact_uri = '{runs['beta'].info.artifact_uri}'": ["beta"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_double_quoted_bare_identifiers(client, experiment_id):
    """A double-quoted identifier without a prefix is an attribute (sqlparse reads "..." as
    an identifier), in filters and in order_by, for runs and for experiments."""
    base, _ = make_runs(client, experiment_id)
    cases = {
        '"run_name" = \'beta\'': ["beta"],
        '"Run name" != \'beta\'': ["Alpha-2", "delta", "gamma", "alpha"],
        f'"start_time" = {base + 3000}': ["delta"],
        '"status" = \'KILLED\'': ["delta"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string
    assert search_both(client, experiment_id, "", ['"start_time" ASC']) == [
        "alpha", "beta", "gamma", "delta", "Alpha-2"]
    assert search_both(client, experiment_id, "", ['"run_name" DESC']) == [
        "gamma", "delta", "beta", "alpha", "Alpha-2"]

    prefix, exps = make_experiments(client)
    assert search_experiments_both(client, prefix, f'"name" = \'{prefix}-cherry\'') == ["cherry"]
    assert search_experiments_both(client, prefix, order_by=['"name" DESC']) == [
        "cherry", "banana", "apple", "Apricot"]


def test_filter_and_clauses(client, experiment_id):
    base, _ = make_runs(client, experiment_id)
    cases = {
        "params.lr = '0.1' AND metrics.loss < 1": ["alpha"],
        "params.lr = '0.1' and metrics.loss < 1": ["alpha"],
        "params.lr = '0.1' and metrics.loss < 1 AND tags.team LIKE 'V%'": ["alpha"],
        "params.lr = '0.1' AND tags.team = 'vision'": [],
        "metrics.loss <= 0.5 AND attributes.status != 'KILLED' AND tags.team ILIKE 'vis%'": [
            "beta", "alpha"],
        f"attributes.user_id = 'bob' AND start_time > {base + 2500} AND params.batch = '32'": [
            "delta"],
        "tags.stage IS NOT NULL AND params.optimizer ILIKE '%d%'": ["gamma", "alpha"],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


def test_filter_datasets(client, experiment_id):
    train = mlflow.data.from_pandas(
        pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}), targets="y", name="train-set"
    )
    evaluation = mlflow.data.from_numpy(np.arange(12.0).reshape(4, 3), name="eval-set")
    assert train.digest != evaluation.digest
    base = int(time.time() * 1000) - 3_600_000
    # (run name, [(dataset, context)]); r4 has the same two datasets as r1, contexts swapped.
    plan = [
        ("r1", [(train, "training"), (evaluation, "eval")]),
        ("r2", [(train, "eval")]),
        ("r3", []),
        ("r4", [(train, "eval"), (evaluation, "training")]),
    ]
    for i, (name, inputs) in enumerate(plan):
        run_id = new_run(client, experiment_id, name, base + 1000 * i)
        with mlflow.start_run(run_id=run_id):
            for dataset, context in inputs:
                mlflow.log_input(dataset, context=context)
    run = client.get_run(run_id)
    assert {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs} == {
        ("train-set", train.digest), ("eval-set", evaluation.digest)}

    cases = {
        "": ["r4", "r3", "r2", "r1"],
        "datasets.name = 'train-set'": ["r4", "r2", "r1"],
        "dataset.name = 'eval-set'": ["r4", "r1"],
        "datasets.name != 'train-set'": ["r4", "r1"],  # any input with another name
        "datasets.name LIKE 'eval%'": ["r4", "r1"],
        "datasets.name LIKE 'EVAL%'": [],
        "datasets.name ILIKE 'EVAL%'": ["r4", "r1"],
        "datasets.name IN ('eval-set', 'other')": ["r4", "r1"],
        "datasets.name NOT IN ('eval-set')": ["r4", "r2", "r1"],
        f"datasets.digest = '{evaluation.digest}'": ["r4", "r1"],
        f"datasets.digest = '{train.digest}'": ["r4", "r2", "r1"],
        "datasets.context = 'training'": ["r4", "r1"],
        "datasets.context = 'eval'": ["r4", "r2", "r1"],
        "datasets.context IN ('training')": ["r4", "r1"],
        "datasets.context LIKE 'ev%'": ["r4", "r2", "r1"],
        # Each datasets clause may match a different input of the run: r1's 'eval' input
        # is eval-set, r4's 'training' input is eval-set.
        "datasets.name = 'train-set' AND datasets.context = 'eval'": ["r4", "r2", "r1"],
        "datasets.name = 'train-set' AND datasets.context = 'training'": ["r4", "r1"],
        "datasets.name = 'train-set' AND attributes.run_name != 'r2'": ["r4", "r1"],
        "datasets.name = 'nope'": [],
    }
    for filter_string, expected in cases.items():
        assert search_both(client, experiment_id, filter_string) == expected, filter_string


# ---------------------------------------------------------------------------------------
# Errors

BAD_RUN_FILTERS = [
    ("params.lr = '0.1' OR params.lr = '0.01'", ["OR"]),
    ("params.lr = '0.1' or metrics.loss < 1", ["or"]),
    ("params.lr =", []),
    ("metrics.loss <", []),
    ("params.lr '0.1'", []),
    ("metrics.loss > 'abc'", ["Expected numeric value type for metric"]),
    ("attributes.start_time > 'yesterday'", ["numeric"]),
    ("params.lr = 0.1", ["quote"]),
    ("attributes.foo = 'x'", ["Invalid attribute key", "foo"]),
    ("foo = 'x'", ["Invalid attribute key", "foo"]),
    ("blah.foo = 'x'", ["blah"]),
    ("metrics.loss IS NULL", ["IS NULL"]),
    ("metrics.loss LIKE '1%'", ["metric"]),
    ("metrics.loss <> 0.3", ["<>"]),
    ("metrics.loss == 0.3", ["=="]),
    ("METRICS.loss > 0", ["METRICS"]),
    ("Params.lr = '0.1'", ["Params"]),
    ("params.lr > '0.1'", ["Invalid comparator"]),
    ("attributes.run_name IN ('a', 'b')", ["IN"]),
    ("datasets.foo = 'x'", ["Invalid dataset key", "foo"]),
]


@pytest.mark.parametrize("filter_string,phrases", BAD_RUN_FILTERS)
def test_invalid_run_filters(client, experiment_id, filter_string, phrases):
    client.create_run(experiment_id, run_name="only")
    with raises_invalid(*phrases):
        client.search_runs([experiment_id], filter_string)
    with raises_invalid(*phrases):
        mlflow.search_runs(experiment_ids=[experiment_id], filter_string=filter_string)


@pytest.mark.parametrize(
    "order_by,phrases",
    [
        (["metrics.loss SIDEWAYS"], ["order_by"]),
        (["attributes.foo"], ["foo"]),
        (["blah.loss"], ["blah"]),
        (["metrics.loss ASC DESC"], ["order_by"]),
        (["`Run name` ASC"], ["Run name"]),  # the run name aliases are for filters only
        (["metrics.loss DESC, params.lr"], ["order_by"]),
    ],
)
def test_invalid_order_by(client, experiment_id, order_by, phrases):
    client.create_run(experiment_id, run_name="only")
    with raises_invalid(*phrases):
        client.search_runs([experiment_id], order_by=order_by)


def test_invalid_page_token(client, experiment_id):
    client.create_run(experiment_id, run_name="only")
    with raises_invalid("page token"):
        client.search_runs([experiment_id], page_token="not a token")
    with raises_invalid("page token"):
        client.search_experiments(page_token="not a token")


# ---------------------------------------------------------------------------------------
# order_by


def test_order_by(client, experiment_id):
    make_runs(client, experiment_id)
    cases = [
        ([], ALL),
        (["metrics.loss"], ["delta", "beta", "alpha", "gamma", "Alpha-2"]),
        (["metrics.loss ASC"], ["delta", "beta", "alpha", "gamma", "Alpha-2"]),
        (["metrics.loss DESC"], ["gamma", "alpha", "delta", "beta", "Alpha-2"]),
        (["metrics.`val loss` DESC"], ["gamma", "alpha", "Alpha-2", "delta", "beta"]),
        (['metrics."val loss" asc'], ["alpha", "gamma", "Alpha-2", "delta", "beta"]),
        (["params.lr ASC"], ["beta", "gamma", "alpha", "Alpha-2", "delta"]),
        (["params.lr DESC"], ["gamma", "alpha", "beta", "Alpha-2", "delta"]),
        (["tags.team ASC"], ["alpha", "gamma", "beta", "Alpha-2", "delta"]),  # binary: V < n < v
        (["tags.team DESC"], ["beta", "gamma", "alpha", "Alpha-2", "delta"]),
        (["attributes.run_name ASC"], ["Alpha-2", "alpha", "beta", "delta", "gamma"]),
        (["run_name DESC"], ["gamma", "delta", "beta", "alpha", "Alpha-2"]),
        (["attributes.start_time ASC"], ["alpha", "beta", "gamma", "delta", "Alpha-2"]),
        (["start_time DESC"], ALL),
        (["attributes.end_time ASC"], ["alpha", "beta", "delta", "Alpha-2", "gamma"]),
        (["attributes.end_time DESC"], ["Alpha-2", "delta", "beta", "alpha", "gamma"]),
        (["attributes.status"], ["beta", "Alpha-2", "alpha", "delta", "gamma"]),
        (['attributes."start_time" ASC'], ["alpha", "beta", "gamma", "delta", "Alpha-2"]),
        (["`run_name` DESC"], ["gamma", "delta", "beta", "alpha", "Alpha-2"]),
        (["tags.`my tag` DESC"], ["alpha", "Alpha-2", "delta", "gamma", "beta"]),
        (["attributes.user_id DESC"], ["Alpha-2", "delta", "gamma", "beta", "alpha"]),
        (["params.lr DESC", "metrics.loss ASC"], ["alpha", "gamma", "beta", "delta", "Alpha-2"]),
        (["params.lr DESC", "metrics.loss DESC"], ["gamma", "alpha", "beta", "delta", "Alpha-2"]),
        (["attributes.user_id", "run_name DESC"], ["beta", "alpha", "gamma", "delta", "Alpha-2"]),
        (["tags.stage DESC", "start_time ASC"], ["gamma", "alpha", "beta", "delta", "Alpha-2"]),
    ]
    for order_by, expected in cases:
        assert search_both(client, experiment_id, "", order_by=order_by) == expected, order_by
    # With a filter.
    assert search_both(
        client, experiment_id, "params.lr IS NOT NULL", order_by=["metrics.loss DESC"]
    ) == ["gamma", "alpha", "beta"]


def test_order_by_metric_nan_and_missing_last(client, experiment_id):
    """A NaN metric sorts after every number and before runs without the metric, in both
    directions."""
    base = int(time.time() * 1000) - 3_600_000
    values = {"one": 1.0, "nan": float("nan"), "none": None, "three": 3.0, "minus": -2.5}
    for i, (name, value) in enumerate(values.items()):
        run_id = new_run(client, experiment_id, name, base + 1000 * i)
        client.log_metric(run_id, "other", 0.0)
        if value is not None:
            client.log_metric(run_id, "m", value)
    assert search_both(client, experiment_id, "", ["metrics.m ASC"]) == [
        "minus", "one", "three", "nan", "none"]
    assert search_both(client, experiment_id, "", ["metrics.m DESC"]) == [
        "three", "one", "minus", "nan", "none"]
    # A filter on the metric leaves out runs without it (and NaN compares false).
    assert search_both(client, experiment_id, "metrics.m > -10", ["metrics.m DESC"]) == [
        "three", "one", "minus"]


def test_default_order_ties_by_run_id(client, experiment_id):
    """The default order is start_time DESC, then run_id ASC."""
    base = int(time.time() * 1000) - 3_600_000
    same = [new_run(client, experiment_id, f"same{i}", base + 5000) for i in range(4)]
    early = new_run(client, experiment_id, "early", base)
    late = new_run(client, experiment_id, "late", base + 9000)
    expected = [late] + sorted(same) + [early]
    assert ids(client.search_runs([experiment_id])) == expected
    assert list(mlflow.search_runs([experiment_id])["run_id"]) == expected
    # An explicit start_time order keeps run_id ASC as the tie-breaker.
    assert ids(client.search_runs([experiment_id], order_by=["start_time ASC"])) == (
        [early] + sorted(same) + [late])
    # So does any other order: equal params fall back to start_time DESC, then run_id.
    for run_id in same + [early]:
        client.log_param(run_id, "p", "x")
    assert ids(client.search_runs([experiment_id], order_by=["params.p"])) == (
        sorted(same) + [early, late])
    # Ordering by run_id itself.
    every = sorted(same + [early, late])
    assert ids(client.search_runs([experiment_id], order_by=["attributes.run_id ASC"])) == every
    assert ids(client.search_runs([experiment_id], order_by=["run_id DESC"])) == every[::-1]


def test_search_several_experiments(client, experiment_id):
    """Runs of several experiments come back as one list in one order; an experiment that
    is not asked for is not searched."""
    other_name = unique_name("compat-search-other")
    other = client.create_experiment(other_name)
    third = client.create_experiment(unique_name("compat-search-third"))
    base = int(time.time() * 1000) - 3_600_000
    for i, exp in enumerate([experiment_id, other, experiment_id, other, third]):
        run_id = client.create_run(exp, start_time=base + 1000 * i, run_name=f"r{i}").info.run_id
        client.log_metric(run_id, "m", float(i % 3))
    assert names(client.search_runs([experiment_id, other])) == ["r3", "r2", "r1", "r0"]
    assert names(client.search_runs([other, experiment_id], "metrics.m > 0")) == ["r2", "r1"]
    by_m = client.search_runs([experiment_id, other, third], order_by=["metrics.m DESC"])
    assert names(by_m) == ["r2", "r4", "r1", "r3", "r0"]
    df = mlflow.search_runs(experiment_ids=[experiment_id, third])
    assert df_names(df) == ["r4", "r2", "r0"]
    assert list(df["experiment_id"]) == [third, experiment_id, experiment_id]
    by_name = mlflow.search_runs(experiment_names=[other_name], filter_string="metrics.m < 2")
    assert df_names(by_name) == ["r3", "r1"]
    assert names(client.search_runs([])) == []


def test_search_runs_max_results_bounds(client, experiment_id):
    for i in range(3):
        client.create_run(experiment_id, run_name=f"r{i}")
    assert len(client.search_runs([experiment_id], max_results=1)) == 1
    assert len(client.search_runs([experiment_id], max_results=50_000)) == 3
    with raises_invalid("max_results"):
        client.search_runs([experiment_id], max_results=0)
    with raises_invalid("max_results"):
        client.search_runs([experiment_id], max_results=50_001)


# ---------------------------------------------------------------------------------------
# run_view_type


def test_run_view_type(client, experiment_id):
    base = int(time.time() * 1000) - 3_600_000
    rid = {}
    for i, name in enumerate(["a", "b", "c", "d"]):
        rid[name] = new_run(client, experiment_id, name, base + 1000 * i)
        client.log_param(rid[name], "group", "x" if name in "ab" else "y")
    client.delete_run(rid["b"])
    client.delete_run(rid["d"])
    assert search_both(client, experiment_id) == ["c", "a"]
    cases = {
        ViewType.ACTIVE_ONLY: ["c", "a"],
        ViewType.DELETED_ONLY: ["d", "b"],
        ViewType.ALL: ["d", "c", "b", "a"],
    }
    for view, expected in cases.items():
        assert search_both(client, experiment_id, run_view_type=view) == expected, view
    assert search_both(
        client, experiment_id, "params.group = 'x'", run_view_type=ViewType.DELETED_ONLY
    ) == ["b"]
    assert search_both(
        client, experiment_id, "params.group = 'y'", ["run_name ASC"], run_view_type=ViewType.ALL
    ) == ["c", "d"]
    client.restore_run(rid["d"])
    assert search_both(client, experiment_id) == ["d", "c", "a"]
    assert search_both(client, experiment_id, run_view_type=ViewType.DELETED_ONLY) == ["b"]


# ---------------------------------------------------------------------------------------
# Paging


def walk(client, experiment_id, page_size, **kwargs):
    """All pages of a search, as a list of pages of run ids."""
    pages = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], max_results=page_size, page_token=token, **kwargs
        )
        pages.append(ids(page))
        token = page.token
        if not token:
            return pages
        assert len(pages) < 100, "paging does not end"


def test_paging_equals_one_search(client, experiment_id):
    base = int(time.time() * 1000) - 3_600_000
    # 11 runs, with start time ties (so the run_id tie-breaker matters), a metric some lack
    # and a param with repeated values.
    for i in range(11):
        run_id = client.create_run(
            experiment_id, start_time=base + 1000 * (i // 3), run_name=f"run{i:02d}"
        ).info.run_id
        if i % 4:
            client.log_metric(run_id, "m", float(i % 5))
        client.log_param(run_id, "p", f"v{i % 3}")
    orders = [
        None,
        ["start_time ASC"],
        ["metrics.m DESC"],
        ["metrics.m ASC"],
        ["params.p DESC", "metrics.m ASC"],
        ["run_name DESC"],
    ]
    for order_by in orders:
        full = ids(client.search_runs([experiment_id], order_by=order_by))
        assert len(full) == 11
        for size in (1, 2, 3, 4, 10, 11, 12):
            pages = walk(client, experiment_id, size, order_by=order_by)
            assert [r for page in pages for r in page] == full, (order_by, size)
            assert all(len(page) == size for page in pages[:-1]), (order_by, size)
            # A full last page has no token (MLflow reads max_results + 1 rows to know).
            assert len(pages) == -(-11 // size), (order_by, size)
        # With a filter.
        filtered = ids(client.search_runs([experiment_id], "params.p != 'v1'", order_by=order_by))
        pages = walk(client, experiment_id, 2, filter_string="params.p != 'v1'", order_by=order_by)
        assert [r for page in pages for r in page] == filtered
        assert len(filtered) == 7


def test_paging_last_page_has_no_token(client, experiment_id):
    for i in range(4):
        client.create_run(experiment_id, run_name=f"r{i}")
    page = client.search_runs([experiment_id], max_results=4)
    assert len(page) == 4
    # MLflow fetches max_results + 1 rows to decide: an exactly full last page has no token.
    assert not page.token
    page = client.search_runs([experiment_id], max_results=3)
    assert len(page) == 3 and page.token
    rest = client.search_runs([experiment_id], max_results=3, page_token=page.token)
    assert len(rest) == 1 and not rest.token
    empty = client.search_runs([experiment_id], "params.none = 'x'", max_results=3)
    assert len(empty) == 0 and not empty.token


def test_paging_with_runs_created_after_the_cursor(client, experiment_id):
    """Runs created between pages that sort after the pages already read: every original
    run is returned exactly once, and the new runs appear on later pages."""
    base = int(time.time() * 1000) - 3_600_000
    originals = [
        new_run(client, experiment_id, f"o{i}", base + 1000 * i) for i in range(6)
    ]
    seen = []
    token = None
    created = []
    while True:
        page = client.search_runs(
            [experiment_id], order_by=["start_time ASC"], max_results=2, page_token=token
        )
        seen.extend(ids(page))
        token = page.token
        if not token:
            break
        created.append(client.create_run(experiment_id, run_name=f"new{len(created)}").info.run_id)
    assert seen[:6] == originals
    assert sorted(seen[6:]) == sorted(created)
    assert len(seen) == len(set(seen))


def test_paging_with_runs_created_before_the_cursor(client, experiment_id, server_is_quiver):
    """Runs created between pages that sort before the pages already read (the default
    order puts the newest run first): no original run is repeated or skipped.

    Quiver's page tokens resume after the last row's sort key. MLflow's are row offsets, so
    against `mlflow server` each new run shifts the next page back by one (a repeat); this
    test checks Quiver's stronger guarantee and is skipped elsewhere.
    """
    if not server_is_quiver:
        pytest.skip("offset page tokens (mlflow server) repeat runs when new ones sort first")
    base = int(time.time() * 1000) - 3_600_000
    originals = [
        new_run(client, experiment_id, f"o{i}", base + 1000 * i) for i in range(7)
    ]
    expected = list(reversed(originals))  # start_time DESC
    seen = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=2, page_token=token)
        seen.extend(ids(page))
        token = page.token
        if not token:
            break
        client.create_run(experiment_id, run_name="newer")  # sorts first: start_time = now
        if len(seen) == 2:
            # Deleting a run already returned does not shift the next page either.
            client.delete_run(seen[0])
    assert seen == expected


def test_pandas_search_runs_follows_pages(client, experiment_id, monkeypatch):
    """`mlflow.search_runs` asks for 10,000 runs a page and follows the tokens; with the page
    size made small, it visibly walks several pages and returns every run."""
    base = int(time.time() * 1000) - 3_600_000
    run_ids = [
        new_run(client, experiment_id, f"r{i}", base + 1000 * (i // 2)) for i in range(7)
    ]
    expected = ids(client.search_runs([experiment_id]))
    assert sorted(expected) == sorted(run_ids)
    expected_asc = ids(client.search_runs([experiment_id], order_by=["start_time ASC"]))

    calls = []
    real = MlflowClient.search_runs

    def spy(self, *args, **kwargs):
        page = real(self, *args, **kwargs)
        calls.append(len(page))
        return page

    monkeypatch.setattr(MlflowClient, "search_runs", spy)
    monkeypatch.setattr(fluent, "NUM_RUNS_PER_PAGE_PANDAS", 3)
    df = mlflow.search_runs(experiment_ids=[experiment_id])
    assert list(df["run_id"]) == expected
    assert calls == [3, 3, 1]

    calls.clear()
    df = mlflow.search_runs(experiment_ids=[experiment_id], order_by=["start_time ASC"])
    assert list(df["run_id"]) == expected_asc
    assert calls == [3, 3, 1]

    calls.clear()
    df = mlflow.search_runs(experiment_ids=[experiment_id], max_results=5)
    assert list(df["run_id"]) == expected[:5]
    assert calls == [3, 2]

    calls.clear()
    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")
    assert ids(runs) == expected


# ---------------------------------------------------------------------------------------
# Experiments


def make_experiments(client):
    """Four experiments named <prefix>-apple, -Apricot, -banana, -cherry (created in that
    order, with distinct creation times), with tags. Returns (prefix, {suffix: Experiment})."""
    prefix = unique_name("compat-search-exp")
    plan = [
        ("apple", {"color": "red", "kind": "fruit"}),
        ("Apricot", {"color": "Orange"}),
        ("banana", {"color": "yellow", "my key": "v w"}),
        ("cherry", {}),
    ]
    exps = {}
    for suffix, tags in plan:
        exp_id = client.create_experiment(f"{prefix}-{suffix}", tags=tags or None)
        exps[suffix] = client.get_experiment(exp_id)
        time.sleep(0.01)  # distinct creation times
    times = [e.creation_time for e in exps.values()]
    assert times == sorted(times) and len(set(times)) == 4
    return prefix, exps


def exp_suffixes(prefix, experiments):
    return [e.name[len(prefix) + 1:] for e in experiments]


def search_experiments_both(client, prefix, filter_string="", order_by=None, **kwargs):
    """Searches with `MlflowClient` and `mlflow.search_experiments`, scoped to `prefix`;
    both must agree. Returns the name suffixes in order."""
    scoped = f"name LIKE '{prefix}-%'" + (f" AND {filter_string}" if filter_string else "")
    listed = client.search_experiments(filter_string=scoped, order_by=order_by, **kwargs)
    fluent_listed = mlflow.search_experiments(filter_string=scoped, order_by=order_by, **kwargs)
    assert [e.experiment_id for e in fluent_listed] == [e.experiment_id for e in listed]
    return exp_suffixes(prefix, listed)


def test_search_experiments_filters(client):
    prefix, exps = make_experiments(client)
    t = {k: e.creation_time for k, e in exps.items()}
    default = ["cherry", "banana", "Apricot", "apple"]  # creation_time DESC
    cases = {
        "": default,
        "name != 'x'": default,
        f"name != '{prefix}-apple'": ["cherry", "banana", "Apricot"],
        f"name LIKE '{prefix}-a%'": ["apple"],
        f"name LIKE '%-A%'": ["Apricot"],
        f"name ILIKE '{prefix}-A%'": ["Apricot", "apple"],
        f"attribute.name LIKE '%an%'": ["banana"],
        f"`name` LIKE '%rr%'": ["cherry"],
        f"experiment_id = '{exps['banana'].experiment_id}'": ["banana"],
        f"experiment_id != '{exps['banana'].experiment_id}'": ["cherry", "Apricot", "apple"],
        f"experiment_id IN ('{exps['banana'].experiment_id}', '{exps['apple'].experiment_id}')": [
            "banana", "apple"],
        f"attribute.experiment_id NOT IN ('{exps['banana'].experiment_id}')": [
            "cherry", "Apricot", "apple"],
        "tags.color IS NULL": ["cherry"],
        "tags.color IS NOT NULL": ["banana", "Apricot", "apple"],
        "tags.kind IS NULL AND tags.color IS NOT NULL": ["banana", "Apricot"],
        "tags.color = 'red'": ["apple"],
        'tag.color = "Orange"': ["Apricot"],
        "tags.color != 'red'": ["banana", "Apricot"],  # an experiment without the tag never matches
        "tags.color LIKE 'o%'": [],
        "tags.color ILIKE 'o%'": ["Apricot"],
        "tags.color LIKE '%e%'": ["banana", "Apricot", "apple"],
        "tags.`my key` = 'v w'": ["banana"],
        'tags."my key" LIKE \'v%\'': ["banana"],
        "tags.kind = 'fruit' AND tags.color = 'red'": ["apple"],
        "tags.kind = 'fruit' and tags.color = 'Orange'": [],
        f"creation_time >= {t['banana']}": ["cherry", "banana"],
        f"creation_time > {t['banana']}": ["cherry"],
        f"creation_time < {t['Apricot']}": ["apple"],
        f"creation_time <= {t['Apricot']}": ["Apricot", "apple"],
        f"creation_time = {t['Apricot']}": ["Apricot"],
        f"creation_time != {t['Apricot']}": ["cherry", "banana", "apple"],
        f"creation_time >= {t['apple']} AND creation_time < {t['cherry']} "
        "AND tags.color != 'red'": ["banana", "Apricot"],
        f"last_update_time >= {t['apple']}": default,
    }
    for filter_string, expected in cases.items():
        assert search_experiments_both(client, prefix, filter_string) == expected, filter_string
    # Unscoped exact name.
    found = client.search_experiments(filter_string=f"name = '{prefix}-banana'")
    assert [e.experiment_id for e in found] == [exps["banana"].experiment_id]
    assert found[0].tags == {"color": "yellow", "my key": "v w"}
    found = mlflow.search_experiments(filter_string=f'name = "{prefix}-cherry"')
    assert [e.experiment_id for e in found] == [exps["cherry"].experiment_id]


def test_search_experiments_order_by(client):
    prefix, exps = make_experiments(client)
    by_id = sorted(exps, key=lambda k: int(exps[k].experiment_id))
    cases = [
        (None, ["cherry", "banana", "Apricot", "apple"]),
        (["name"], ["Apricot", "apple", "banana", "cherry"]),  # binary: 'A' < 'a'
        (["name ASC"], ["Apricot", "apple", "banana", "cherry"]),
        (["name DESC"], ["cherry", "banana", "apple", "Apricot"]),
        (["creation_time"], ["apple", "Apricot", "banana", "cherry"]),
        (["creation_time DESC"], ["cherry", "banana", "Apricot", "apple"]),
        (["experiment_id ASC"], by_id),
        (["experiment_id DESC"], list(reversed(by_id))),
        (["attribute.name DESC"], ["cherry", "banana", "apple", "Apricot"]),
        (["`creation_time` ASC"], ["apple", "Apricot", "banana", "cherry"]),
        (["last_update_time DESC"], ["cherry", "banana", "Apricot", "apple"]),
    ]
    for order_by, expected in cases:
        assert search_experiments_both(client, prefix, order_by=order_by) == expected, order_by


def test_search_experiments_view_type(client):
    prefix, exps = make_experiments(client)
    client.delete_experiment(exps["banana"].experiment_id)
    client.delete_experiment(exps["apple"].experiment_id)
    assert search_experiments_both(client, prefix) == ["cherry", "Apricot"]
    assert search_experiments_both(client, prefix, view_type=ViewType.ACTIVE_ONLY) == [
        "cherry", "Apricot"]
    assert search_experiments_both(client, prefix, view_type=ViewType.DELETED_ONLY) == [
        "banana", "apple"]
    assert search_experiments_both(client, prefix, view_type=ViewType.ALL) == [
        "cherry", "banana", "Apricot", "apple"]
    assert search_experiments_both(
        client, prefix, "tags.color LIKE '%e%'", view_type=ViewType.DELETED_ONLY
    ) == ["banana", "apple"]
    client.restore_experiment(exps["apple"].experiment_id)
    assert search_experiments_both(client, prefix, order_by=["name"]) == [
        "Apricot", "apple", "cherry"]


def test_search_experiments_paging(client, monkeypatch):
    prefix, exps = make_experiments(client)
    scoped = f"name LIKE '{prefix}-%'"
    for order_by in (None, ["name DESC"], ["creation_time ASC"], ["experiment_id DESC"]):
        full = client.search_experiments(filter_string=scoped, order_by=order_by)
        assert len(full) == 4
        for size in (1, 2, 3, 4, 5):
            seen, token, pages = [], None, 0
            while True:
                page = client.search_experiments(
                    filter_string=scoped, order_by=order_by, max_results=size, page_token=token
                )
                assert len(page) <= size
                seen.extend(e.experiment_id for e in page)
                pages += 1
                token = page.token
                if not token:
                    break
            assert seen == [e.experiment_id for e in full], (order_by, size)
            # A full last page has no token (MLflow reads max_results + 1 rows to know).
            assert pages == -(-4 // size), (order_by, size)

    # mlflow.search_experiments with max_results returns that many, in order.
    limited = mlflow.search_experiments(filter_string=scoped, max_results=3)
    assert exp_suffixes(prefix, limited) == ["cherry", "banana", "Apricot"]
    # Without max_results it follows the tokens (page size made small to see it).
    monkeypatch.setattr(fluent, "SEARCH_MAX_RESULTS_DEFAULT", 3)
    calls = []
    real = MlflowClient.search_experiments

    def spy(self, *args, **kwargs):
        page = real(self, *args, **kwargs)
        calls.append(len(page))
        return page

    monkeypatch.setattr(MlflowClient, "search_experiments", spy)
    every = mlflow.search_experiments(filter_string=scoped, order_by=["name"])
    assert exp_suffixes(prefix, every) == ["Apricot", "apple", "banana", "cherry"]
    assert calls == [3, 1]


@pytest.mark.parametrize(
    "filter_string,phrases",
    [
        ("name = 'a' OR name = 'b'", ["OR"]),
        ("name =", []),
        ("foo = 'x'", ["foo"]),
        ("creation_time > 'yesterday'", []),
        ("name = 3", ["quote"]),
        ("name <> 'x'", ["<>"]),
        ("attributes.name = 'x'", ["attributes"]),  # experiments know `attribute.` only
        ("TAGS.color = 'x'", ["TAGS"]),
        ("params.lr = '0.1'", ["Invalid entity type"]),
        ("name IN ('a', 'b')", ["list"]),  # lists are for experiment_id only
        ("tags.color > 'a'", ["Invalid comparator"]),
    ],
)
def test_invalid_experiment_filters(client, filter_string, phrases):
    with raises_invalid(*phrases):
        client.search_experiments(filter_string=filter_string)
    with raises_invalid(*phrases):
        mlflow.search_experiments(filter_string=filter_string)
