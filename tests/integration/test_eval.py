"""`visearch eval` on real models and real images (Milvus Lite): the blended ranker against visual-only
on the near-duplicate and text-to-image suites, the int8 text encoder against fp32 on text-to-image,
and the command end to end.

Smaller than the command's defaults to keep the run short: 20 Fashion-MNIST distractors (instead of
200) beside the 19 photos and 11 real distractor images, and the near-duplicate transformations where
visual-only is not already perfect in the full run (docs/quality.md: the other four score 1.0 with
every profile).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.integration.conftest import LOCAL_FILES
from visearch.embedded import EmbeddedPlatform
from visearch.offline.evaluation.runner import evaluate, evaluation_settings
from visearch.offline.evaluation.suites import build_suites
from visearch.shared.config import ModelSettings, StoreSettings
from visearch.shared.models.registry import TEXT_MODEL_INT8

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite, pytest.mark.slow]

K = 10
HARD_TRANSFORMS = ["crop_object", "thumbnail_64px", "rotate_25deg", "mirror_rotate_90", "combined"]
# nDCG@10 margins of blended over visual_only (CPU, Milvus Lite, 2026-11-23; the test prints its figures,
# which were identical to four decimals in three runs and on CI):
#   neardup     visual_only nDCG@10 0.882 (recall@10 0.947, mAP 0.864); blended 0.900 (0.958, 0.884): +0.018
#   text2image  visual_only nDCG@10 0.696 (recall@10 0.890, mAP 0.645); blended 0.736 (0.907, 0.685): +0.040
# The margins were set at half the gains first measured (+0.031 and +0.040). Since then visual-only's
# neardup figure rose from 0.848 (most likely because a query image's OCR text no longer feeds the
# joint-space text factor, which visual_only also weighs), so the neardup margin is now most of the
# measured gain; it is kept, not lowered (docs/quality.md has the per-factor ablation).
MARGIN = {"neardup": 0.015, "text2image": 0.02}
# How much text-to-image nDCG@10 the int8 text encoder may lose against fp32. Measured (2026-11-23, 41
# captions): with these 20 distractors int8 scored visual_only 0.703 vs 0.696, blended 0.740 vs 0.736;
# with the command's 200, 0.583 vs 0.595 and 0.698 vs 0.682 (docs/performance.md).
INT8_MAX_LOSS = 0.03
# The query-engine issue's bar for "search with a screenshot": the original photo first for 95 % of the pages.
SCREENSHOT_MIN_RECALL_AT_1 = 0.95
# Open-vocabulary text search (issue 16), blended, on the openvocab suite with 20 Fashion-MNIST distractors,
# against the same run with the text-to-visual map and the WordNet concepts off (the text query in the
# ConSE joint space only, as before the issue). Measured with the command's 200 distractors (2026-12-03,
# docs/quality.md): nDCG@10 0.476 -> 0.649, hit@3 0.585 -> 0.769. The bars: +0.10 nDCG@10, hit@3 0.75.
# Measured here (20 distractors): 0.548 -> 0.690, hit@3 0.615 -> 0.800.
OPENVOCAB_MIN_GAIN = 0.10
OPENVOCAB_MIN_HIT_AT_3 = 0.75
# What turns the text-query techniques off (ConseSettings, read by the embedded platform).
TEXT_QUERY_OFF = {
    "VISEARCH_CONSE_QUERY_VISUAL": "false",
    "VISEARCH_CONSE_QUERY_CONCEPTS": "0",
    "VISEARCH_CONSE_QUERY_CENTERING": "0",
    "VISEARCH_CONSE_QUERY_PROMPT_WORDS": "0",
}


@pytest.fixture(scope="module")
def ablation(built_models, tmp_path_factory):
    suites = build_suites(["neardup", "text2image", "screenshot"], distractors=20, transforms=HARD_TRANSFORMS)
    db = tmp_path_factory.mktemp("eval") / "eval.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)), image_settings=LOCAL_FILES, ranking_settings=evaluation_settings()
    ) as platform:
        return evaluate(platform, suites, ["visual_only", "blended"], k=K, depth=50, progress=False)


@pytest.fixture(scope="module")
def openvocab(built_models, tmp_path_factory):
    """The openvocab suite with today's text queries and with the issue's techniques off, in one run."""
    suites = build_suites(["openvocab"], distractors=20)
    runs = {}
    for name, env in (("on", {}), ("off", TEXT_QUERY_OFF)):
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            db = tmp_path_factory.mktemp(f"eval-openvocab-{name}") / "eval.db"
            with EmbeddedPlatform(
                StoreSettings(uri=str(db)), image_settings=LOCAL_FILES, ranking_settings=evaluation_settings()
            ) as platform:
                assert (platform.embedder.text_map is None) == (name == "off")
                runs[name] = evaluate(platform, suites, ["blended"], k=K, depth=50, progress=False)
    return runs


@pytest.fixture(scope="module")
def int8_text2image(built_models, tmp_path_factory):
    TEXT_MODEL_INT8.locate(ModelSettings().cache_dir)  # fails (not skips) when `visearch models build` has not made it
    suites = build_suites(["text2image"], distractors=20)
    db = tmp_path_factory.mktemp("eval-int8") / "eval.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)),
        model_settings=ModelSettings(text_int8=True),
        image_settings=LOCAL_FILES,
        ranking_settings=evaluation_settings(),
    ) as platform:
        assert platform.embedder.text_model.startswith(f"{TEXT_MODEL_INT8.name}@")
        return evaluate(platform, suites, ["visual_only", "blended"], k=K, depth=50, progress=False)


@pytest.mark.parametrize("profile", ["visual_only", "blended"])
def test_int8_text_encoder_costs_little_text_to_image_quality(ablation, int8_text2image, profile):
    """The int8 text encoder (every text vector: queries, ConSE class prompts, OCR and object context)
    keeps text-to-image nDCG@10 within INT8_MAX_LOSS of the fp32 encoder's, on the same suite."""
    fp32 = ablation["suites"]["text2image"]["profiles"][profile]["summary"][f"nDCG@{K}"]
    int8 = int8_text2image["suites"]["text2image"]["profiles"][profile]["summary"][f"nDCG@{K}"]
    print(profile, json.dumps({"fp32": round(fp32, 4), "int8": round(int8, 4)}))
    assert int8 >= fp32 - INT8_MAX_LOSS, (fp32, int8)


@pytest.mark.parametrize("suite", ["neardup", "text2image"])
def test_blended_beats_visual_only(ablation, suite):
    """nDCG@10 of the blended profile exceeds visual-only's by the measured margin."""
    runs = ablation["suites"][suite]["profiles"]
    figures = {p: {m: round(runs[p]["summary"][m], 4) for m in (f"nDCG@{K}", f"recall@{K}", "mAP")} for p in runs}
    print(suite, json.dumps(figures))
    assert {r["ranker"] for r in runs["blended"]["queries"]} == {"profile:blended"}
    assert {r["ranker"] for r in runs["visual_only"]["queries"]} == {"profile:visual_only"}
    blended, visual = runs["blended"]["summary"][f"nDCG@{K}"], runs["visual_only"]["summary"][f"nDCG@{K}"]
    assert visual < 1.0, "visual-only is saturated: the suite shows nothing"
    assert blended >= visual + MARGIN[suite], figures


def test_screenshot_queries_find_the_photo_first(ablation):
    """A product photo pasted at 30-50 % into a shop page (the screenshot suite): the blended profile ranks the
    original first for at least 95 % of the pages, and no less often than visual-only."""
    runs = ablation["suites"]["screenshot"]["profiles"]
    figures = {p: {m: round(runs[p]["summary"][m], 4) for m in ("recall@1", f"nDCG@{K}")} for p in runs}
    print("screenshot", json.dumps(figures))
    blended, visual = runs["blended"]["summary"]["recall@1"], runs["visual_only"]["summary"]["recall@1"]
    assert blended >= SCREENSHOT_MIN_RECALL_AT_1 and blended >= visual, figures


def test_open_vocabulary_text_queries_find_more(openvocab):
    """On the openvocab suite (short queries, most naming no ImageNet class, photos indexed untitled), the
    text-to-visual map and the WordNet concepts lift blended nDCG@10 by OPENVOCAB_MIN_GAIN over the joint
    space alone, and hit@3 reaches OPENVOCAB_MIN_HIT_AT_3."""
    summary = {name: run["suites"]["openvocab"]["profiles"]["blended"]["summary"] for name, run in openvocab.items()}
    figures = {
        name: {
            m: s[m] if isinstance(s[m], str) else round(s[m], 4) for m in (f"nDCG@{K}", "hit@3", "hub@3", "hub_image")
        }
        for name, s in summary.items()
    }
    print("openvocab", json.dumps(figures))
    assert summary["on"][f"nDCG@{K}"] >= summary["off"][f"nDCG@{K}"] + OPENVOCAB_MIN_GAIN, figures
    assert summary["on"]["hit@3"] >= OPENVOCAB_MIN_HIT_AT_3, figures


def test_eval_command_writes_json_markdown_and_plots(built_models, tmp_path):
    """`visearch eval` on a small Fashion-MNIST suite writes results.json, report.md and the PNGs."""
    from visearch.cli import app

    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--suite",
            "fashion",
            "--profile",
            "visual_only",
            "--profile",
            "blended",
            "--profile",
            "blended-no-tags",
            "--fashion-catalogue",
            "60",
            "--fashion-queries",
            "6",
            "--k",
            "5",
            "--depth",
            "20",
            "--out",
            str(out),
            "--db",
            str(tmp_path / "eval.db"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((out / "results.json").read_text())
    fashion = doc["suites"]["fashion"]
    assert fashion["catalogue"] == 60 and fashion["queries"] == 6
    assert set(fashion["profiles"]) == {"visual_only", "blended", "blended-no-tags"}
    for run in fashion["profiles"].values():
        assert 0.0 <= run["summary"]["nDCG@5"] <= 1.0 and len(run["summary"]["pr_curve"]) == 11
        assert len(run["queries"]) == 6 and all(len(q["top"]) == 5 for q in run["queries"])
    report = (out / "report.md").read_text()
    assert "## fashion" in report and "| blended-no-tags |" in report and "Factor ablation" in report
    for png in ("pr_fashion.png", "ablation.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
