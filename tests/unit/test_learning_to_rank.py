"""Learning to rank without models or brokers: the impression/click join and its labels, malformed
records, the fold-back of standardised coefficients into a raw-scale linear ranker, the held-out
comparison, ranker version numbering and the `visearch rank` commands over files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from visearch.cli_rank import rank_app
from visearch.offline.rank.fitting import (
    NotEnoughDataError,
    features,
    fit_and_evaluate,
    fit_linear,
    fold_back,
    mean_ndcg,
    prepare_query,
    split_queries,
)
from visearch.offline.rank.learning import Judgment, join_feedback, parse_judgments, write_judgments
from visearch.services.ranking.ranker import Ranker, RankerRegistry, read_ranker, write_ranker
from visearch.v1 import events_pb2

Event = events_pb2.FeedbackEvent


def impression(query_id, image_id, position=0, **factors) -> bytes:
    return Event(
        query_id=query_id,
        image_id=image_id,
        position=position,
        action=Event.ACTION_IMPRESSION,
        factors=factors or {"visual": 0.5},
        ranker="profile:blended",
        query="image",
    ).SerializeToString()


def action(query_id, image_id, kind) -> bytes:
    return Event(query_id=query_id, image_id=image_id, action=kind).SerializeToString()


# --- join and labels ------------------------------------------------------------------------------------


def test_join_labels_purchase_click_and_shown():
    """label 2 purchase (even after a click), 1 click, 0 shown and not clicked; clicks may precede impressions."""
    data = join_feedback(
        [
            action("q1", "b", Event.ACTION_CLICK),  # before its impression: another partition
            impression("q1", "a", 0, visual=0.9, bm25=0.1),
            impression("q1", "b", 1, visual=0.8),
            impression("q1", "c", 2, visual=0.7),
            action("q1", "c", Event.ACTION_CLICK),
            action("q1", "c", Event.ACTION_PURCHASE),
            action("q1", "c", Event.ACTION_CLICK),
        ]
    )
    labels = {j.image_id: j.label for j in data.judgments}
    assert labels == {"a": 0, "b": 1, "c": 2}
    assert dict(data.judgments[0].factors) == pytest.approx({"visual": 0.9, "bm25": 0.1})
    assert data.records == 7 and not data.skipped and data.dropped_queries == 0


def test_queries_without_a_positive_are_dropped():
    data = join_feedback(
        [
            impression("seen", "a"),
            impression("seen", "b"),
            impression("liked", "a"),
            action("liked", "a", Event.ACTION_CLICK),
        ]
    )
    assert {j.query_id for j in data.judgments} == {"liked"}
    assert data.dropped_queries == 1 and data.summary()["dropped_queries_without_positive"] == 1


def test_malformed_feedback_is_skipped_and_counted():
    nan = Event(query_id="q", image_id="n", action=Event.ACTION_IMPRESSION, factors={"visual": float("nan")})
    data = join_feedback(
        [
            b"\xff\x00 not a protobuf",
            impression("", "a"),
            impression("q", ""),
            Event(query_id="q", image_id="u", action=Event.ACTION_UNSPECIFIED).SerializeToString(),
            nan.SerializeToString(),
            Event(query_id="q", image_id="e", action=Event.ACTION_IMPRESSION).SerializeToString(),  # no factors
            Event(
                query_id="q", image_id="p", action=Event.ACTION_IMPRESSION, factors={"popularity": 3.0}
            ).SerializeToString(),
            impression("q", "a", visual=0.4, popularity=2.0),
            impression("q", "a", visual=0.1),  # redelivered
            action("q", "ghost", Event.ACTION_CLICK),
            action("q", "a", Event.ACTION_CLICK),
        ]
    )
    assert data.skipped == {
        "undecodable": 1,
        "missing_ids": 2,
        "unknown_action": 1,
        "bad_factors": 1,
        "no_factors": 2,
        "duplicate_impression": 1,
        "feedback_without_impression": 1,
    }
    assert data.ignored_factors == {"popularity": 2}
    assert [(j.image_id, dict(j.factors), j.label) for j in data.judgments] == [
        ("a", {"visual": pytest.approx(0.4)}, 1)
    ]


def test_judged_jsonl_malformed_lines_are_skipped(tmp_path):
    good = {"query_id": "q", "image_id": "a", "factors": {"visual": 0.5}, "label": 3}
    lines = [
        json.dumps(good),
        "",
        "{not json",
        json.dumps([1, 2]),
        json.dumps({**good, "image_id": ""}),
        json.dumps({k: v for k, v in good.items() if k != "label"}),
        json.dumps({**good, "image_id": "b", "label": 4}),
        json.dumps({**good, "image_id": "c", "label": 1.5}),
        json.dumps({**good, "image_id": "d", "label": True}),
        json.dumps({**good, "image_id": "e", "factors": {"visual": "high"}}),
        json.dumps({**good, "image_id": "f", "factors": {}}),
        json.dumps(good),
        json.dumps({**good, "image_id": "g", "label": 0, "factors": {"visual": 0.1, "mood": 1}}),
    ]
    path = tmp_path / "j.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe broken bytes\n")
    from visearch.offline.rank.learning import read_judgments

    data = read_judgments(path)
    assert data.skipped == {
        "bad_json": 2,
        "missing_fields": 3,
        "bad_label": 3,
        "bad_factors": 1,
        "no_factors": 1,
        "duplicate": 1,
    }
    assert [(j.image_id, j.label) for j in data.judgments] == [("a", 3), ("g", 0)]
    assert data.ignored_factors == {"mood": 1} and data.records == 13  # the blank line is not a record


def test_judgments_round_trip(tmp_path):
    rows = [Judgment("q", "a", {"visual": 0.25, "bm25": 1.0}, 2), Judgment("q", "b", {"visual": 0.5}, 0)]
    assert write_judgments(tmp_path / "sub" / "j.jsonl", rows) == 2
    assert parse_judgments((tmp_path / "sub" / "j.jsonl").read_text().splitlines()).judgments == rows


# --- fitting --------------------------------------------------------------------------------------------


def synthetic(queries: int = 40, per_query: int = 30, seed: int = 0, flip: set[str] = frozenset()) -> list[Judgment]:
    """Queries whose relevance follows 2 * bm25 + visual - colour plus noise, with query-level offsets (some
    queries have high similarities everywhere); ``flip`` queries follow the opposite rule."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        qid = f"q{q:03d}"
        offset = rng.uniform(0, 0.5)
        for i in range(per_query):
            visual, bm25, colour = offset + rng.uniform(0, 0.5), rng.uniform(0, 1), rng.uniform(0, 1)
            utility = 2 * bm25 + visual - colour + rng.normal(0, 0.3)
            utility = 3.0 - utility if qid in flip else utility
            label = int(np.digitize(utility, [0.8, 1.6, 2.2]))
            rows.append(
                Judgment(qid, f"{qid}-{i}", {"visual": visual, "bm25": bm25, "colour": colour, "in_stock": 1.0}, label)
            )
    return rows


def by_query(rows):
    grouped = {}
    for j in rows:
        grouped.setdefault(j.query_id, []).append(j)
    return grouped


def test_pointwise_fold_back_orders_as_the_model_does():
    queries = by_query(synthetic())
    fit = fit_linear(queries, "pointwise", c=1.0)
    ranker = fit.ranker()
    assert set(fit.weights) == {"visual", "bm25", "colour"}  # in_stock is constant: nothing learned about it
    assert fit.weights["bm25"] > fit.weights["visual"] > 0 > fit.weights["colour"]
    for judgments in list(queries.values())[:10]:
        model = fit.decision_function(prepare_query(judgments))
        raw = np.array([ranker.rank({j.image_id: j.factors}).pop().score for j in judgments])
        # The linear ranker over raw values = the model over query-centred rows + a per-query constant.
        assert np.allclose(raw - model, (raw - model)[0], atol=1e-9)
        assert [h.image_id for h in ranker.rank({j.image_id: j.factors for j in judgments})] == [
            judgments[i].image_id for i in np.lexsort(([j.image_id for j in judgments], -model))
        ]


def test_pairwise_fold_back_scores_differences_as_the_model_does():
    queries = by_query(synthetic())
    fit = fit_linear(queries, "pairwise", c=1.0, max_pairs=50)
    assert fit.bias == 0.0 and fit.weights["bm25"] > fit.weights["visual"] > 0 > fit.weights["colour"]
    judgments = queries["q001"]
    x = features(judgments)
    raw = fit.bias + x @ np.array([fit.weights.get(f, 0.0) for f in fit.factors])
    pairs = np.array([[0, 1], [2, 7], [5, 3]])
    assert np.allclose(fit.decision_function(x[pairs[:, 0]] - x[pairs[:, 1]]), raw[pairs[:, 0]] - raw[pairs[:, 1]])


def test_fold_back_by_hand():
    """score = b + sum c_f (x_f - m_f) / s_f  ==  (b - sum c_f m_f / s_f) + sum (c_f / s_f) x_f; s = 0: dropped."""
    weights, bias = fold_back(
        np.array([2.0, -1.0, 5.0]),
        0.5,
        np.array([1.0, 4.0, 3.0]),
        np.array([0.5, 2.0, 0.0]),
        ["visual", "bm25", "tags"],
    )
    assert weights == {"visual": 4.0, "bm25": -0.5} and bias == pytest.approx(0.5 - 4.0 + 2.0)


def test_fit_needs_different_labels():
    same = [Judgment("q", str(i), {"visual": i / 10}, 1) for i in range(5)]
    for objective in ("pointwise", "pairwise"):
        with pytest.raises(NotEnoughDataError):
            fit_linear({"q": same}, objective)
    with pytest.raises(ValueError):
        fit_linear({"q": same}, "listwise")


def test_split_is_by_query_and_deterministic():
    ids = [f"q{i}" for i in range(20)]
    train, test = split_queries(ids + ids, 0.3, seed=3)  # duplicates: still one group per query
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(ids) and len(test) == 6
    assert split_queries(ids, 0.3, seed=3) == (train, test)
    with pytest.raises(NotEnoughDataError):
        split_queries(["a", "b", "c"], 0.3, 0)


def test_fitted_ranker_beats_a_wrong_default_on_held_out_queries():
    from visearch.offline.rank.learning import TrainingData

    data = TrainingData(judgments=synthetic(queries=60))
    wrong = Ranker("profile:blended", {"visual": 1.0, "colour": 1.0})
    report = fit_and_evaluate(data, [wrong], holdout=0.3, seed=0)
    assert report.evaluated_queries == 18 and report.current == "profile:blended"
    assert report.heldout["fitted"] > report.heldout["profile:blended"] + 0.1 and report.better
    metrics = report.metrics()
    assert metrics["ndcg@10_heldout"]["fitted"] == report.heldout["fitted"] and metrics["gain"] == report.gain


def test_mean_ndcg_matches_a_hand_computation():
    judgments = [
        Judgment("q", "a", {"visual": 0.9}, 0),
        Judgment("q", "b", {"visual": 0.5}, 2),
        Judgment("q", "c", {"visual": 0.1}, 1),
        Judgment("single", "x", {"visual": 1.0}, 1),
    ]
    value, n = mean_ndcg(Ranker("r", {"visual": 1.0}), by_query(judgments), k=10)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 + 1 / math.log2(3)
    assert n == 1 and value == pytest.approx(dcg / ideal)  # the one-candidate query is left out


# --- versions and the CLI -------------------------------------------------------------------------------


def test_versions_number_up_from_the_newest(tmp_path):
    assert write_ranker(tmp_path, Ranker("x", {"visual": 1.0})).name == "ranker-v1.json"
    (tmp_path / "ranker-v7.json").write_text(Ranker("y", {"bm25": 1.0}).to_json(version=7))
    (tmp_path / "ranker-vX.json").write_text("{}")
    path = write_ranker(tmp_path, Ranker("z", {"visual": 2.0}), metrics={"gain": 0.1})
    ranker, doc = read_ranker(path)
    assert path.name == "ranker-v8.json" and ranker.name == "learned:8" and doc["version"] == 8
    assert RankerRegistry(learned_dir=tmp_path).resolve("t").name == "learned:8"


runner = CliRunner()


def _judged_file(tmp_path, rows) -> str:
    path = tmp_path / "judged.jsonl"
    write_judgments(path, rows)
    return str(path)


def test_rank_fit_writes_a_version_and_show_lists_it(tmp_path, monkeypatch):
    monkeypatch.delenv("VISEARCH_RANKING_LEARNED_DIR", raising=False)
    monkeypatch.setenv("VISEARCH_RANKING_PROFILE", "colour")  # a default that ignores bm25 and visual
    out = tmp_path / "rankers"
    judged = _judged_file(tmp_path, synthetic(queries=40))
    result = runner.invoke(rank_app, ["fit", "--judgments", judged, "--out-dir", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    ranker, doc = read_ranker(out / "ranker-v1.json")
    assert ranker.name == "learned:1" and ranker.fusion == "blend" and ranker.weights["bm25"] > 0
    assert doc["trained_on"]["queries"] == 40 and doc["trained_on"]["heldout_queries"] == 12
    assert doc["metrics"]["compared_with"] == "profile:colour" and doc["metrics"]["gain"] > 0 and not doc["forced"]
    shown = runner.invoke(rank_app, ["show", "--out-dir", str(out)], terminal_width=200)
    assert shown.exit_code == 0 and "learned rankers in" in shown.output and "bm25" in shown.output


def test_rank_fit_refuses_a_ranker_worse_than_the_current_one(tmp_path, monkeypatch):
    """Held-out queries that follow the opposite rule: the fitted ranker loses to the current learned one
    there; nothing is written unless --force."""
    monkeypatch.delenv("VISEARCH_RANKING_LEARNED_DIR", raising=False)
    ids = [f"q{q:03d}" for q in range(40)]
    _, held = split_queries(ids, 0.3, seed=0)
    rows = synthetic(queries=40, flip=set(held))
    assert {j.query_id for j in rows if j.label > 0} == set(ids)  # no query dropped: the split is as computed
    judged = _judged_file(tmp_path, rows)
    out = tmp_path / "rankers"
    write_ranker(out, Ranker("x", {"bm25": -2.0, "visual": -1.0, "colour": 1.0}))  # v1: right for the held-out
    result = runner.invoke(rank_app, ["fit", "--judgments", judged, "--out-dir", str(out)])
    assert result.exit_code == 1 and "refused" in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == ["ranker-v1.json"]
    forced = runner.invoke(rank_app, ["fit", "--judgments", judged, "--out-dir", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert read_ranker(out / "ranker-v2.json")[1]["forced"] is True


def test_rank_fit_usage_and_data_errors(tmp_path):
    assert runner.invoke(rank_app, ["fit", "--out-dir", str(tmp_path)]).exit_code == 2  # neither source
    missing = runner.invoke(rank_app, ["fit", "--judgments", str(tmp_path / "none.jsonl"), "--out-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    few = _judged_file(tmp_path, synthetic(queries=3))
    result = runner.invoke(rank_app, ["fit", "--judgments", few, "--out-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not enough training data" in result.output
    assert not (tmp_path / "r").exists()


def test_rank_rollback_copies_an_older_version_as_the_next(tmp_path):
    """A running registry only loads newer versions: rollback writes the old weights as version N+1."""
    write_ranker(tmp_path, Ranker("a", {"visual": 1.0}))
    write_ranker(tmp_path, Ranker("b", {"bm25": 1.0}))
    registry = RankerRegistry(learned_dir=tmp_path, reload_interval_s=3600)
    assert registry.resolve("t").name == "learned:2"
    assert runner.invoke(rank_app, ["rollback", "--out-dir", str(tmp_path)]).exit_code == 0
    registry.reload()
    served = registry.resolve("t")
    assert served.name == "learned:3" and dict(served.weights) == {"visual": 1.0}
    assert read_ranker(tmp_path / "ranker-v3.json")[1]["rolled_back_to"] == "learned:1"
    assert runner.invoke(rank_app, ["rollback", "--out-dir", str(tmp_path), "--to-profile", "blended"]).exit_code == 0
    assert registry.reload() == 4 and registry.resolve("t").weights == RankerRegistry().profiles["blended"].weights
    assert runner.invoke(rank_app, ["rollback", "--out-dir", str(tmp_path), "--to", "9"]).exit_code == 2
    assert runner.invoke(rank_app, ["rollback", "--out-dir", str(tmp_path), "--to-profile", "nope"]).exit_code == 2
