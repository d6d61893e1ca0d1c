"""``antigravity benchmark --feedback train`` (:mod:`antigravity.harness.feedback_benchmark`):
feedback/evaluation splits, duplicates, strata, seeds, the served row, Holm, the CLI — with
the HashEncoder stub and the planted topic pattern of ``tests/test_feedback_training.py``
(query words of topic t ↔ document words of topic t; learnable, and it generalises to items
no feedback judged)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from antigravity.adaptation.feedback_training import FeedbackConfig, split_feedback
from antigravity.adaptation.gates import is_held_out, split_held_out
from antigravity.core.errors import ConfigurationError
from antigravity.evaluation import holm
from antigravity.harness import feedback_benchmark as fb
from antigravity.harness.benchmark import load_source, normalise
from antigravity.serving.feedback import query_key
from antigravity.settings import Settings
from tests.conftest import HashEncoder
from tests.test_cli import _run
from tests.test_feedback_training import DW, QW, T, qtext

N_FB, N_NEW, N_SEEN = 48, 16, 8  # feedback items 0..47; never-seen test items 48..63; seen test queries on items 0..7
SECRET = "METADATA-MUST-NOT-BE-READ"


def _docs(n: int) -> list[dict]:
    docs = []
    for j in range(n):
        t = j % T
        t2 = (t + 1 + j % (T - 1)) % T
        docs.append({"_id": f"r{j}", "title": "", "text": " ".join(DW[t]) + f" item{j}"})
        docs.append({"_id": f"x{j}", "title": "", "text": " ".join(DW[t2]) + f" item{j}"})
    return docs


def _write(d, docs, queries, qrels: dict[str, list[tuple[str, str, int]]]):
    (d / "qrels").mkdir(parents=True)
    with open(d / "corpus.jsonl", "w") as fh:
        for doc in docs:
            fh.write(json.dumps(doc) + "\n")
    with open(d / "queries.jsonl", "w") as fh:
        for q in queries:
            fh.write(json.dumps(q) + "\n")
    for split, rows in qrels.items():
        (d / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{doc}\t{g}\n" for q, doc, g in rows))
    return d


def _train_corpus(tmp_path, noise: bool = False):
    """A corpus with a train split: 48 TRAIN feedback queries (relevant r_j, grade 2; distractor
    x_j, grade 0) + one TRAIN query equal (case/space) to test query ``s0``; TEST: 8 reworded
    queries on TRAIN items (seen) and 16 on new items (never seen). Every query's metadata
    names the *distractor* as gold: reading it would change the feedback and the strata."""
    queries, train, test = [], [], []
    rng = np.random.default_rng(0)
    for j in range(N_FB):
        queries.append({"_id": f"f{j}", "text": qtext(j), "metadata": {"gold": f"x{j}", "note": SECRET}})
        if noise:  # ``noise``: each feedback query judges a random document relevant (nothing to learn)
            train.append((f"f{j}", f"{'rx'[rng.integers(2)]}{rng.integers(N_FB)}", 2))
        else:
            train += [(f"f{j}", f"r{j}", 2), (f"f{j}", f"x{j}", 0)]
    for j in range(N_SEEN):
        queries.append({"_id": f"s{j}", "text": f"{QW[j % T][0]} {QW[j % T][2]} item{j} again", "metadata": {"gold": f"x{j}"}})
        test.append((f"s{j}", f"r{j}", 1))
    for j in range(N_FB, N_FB + N_NEW):
        queries.append({"_id": f"n{j}", "text": qtext(j), "metadata": {"gold": f"x{j}", "relevant": {f"r{j}": 1}}})
        test.append((f"n{j}", f"r{j}", 1))
    queries.append({"_id": "dup", "text": "  " + queries[N_FB]["text"].upper() + " "})  # == test query s0 up to case/space
    train.append(("dup", "r0", 1))
    return _write(tmp_path / ("noisy" if noise else "withtrain"), _docs(N_FB + N_NEW), queries, {"train": train, "test": test})


def _half_corpus(tmp_path, n: int = 40):
    """Test judgments only: n judged queries (item j, relevant r_j) + ``twin``, a judged query
    equal (case/space) to q0's text, judged on the same document."""
    queries = [{"_id": f"q{j}", "text": qtext(j), "metadata": {"gold": f"x{j}", "note": SECRET}} for j in range(n)]
    queries.append({"_id": "twin", "text": qtext(0).upper() + "  "})
    rows = [(f"q{j}", f"r{j}", 1) for j in range(n)] + [("twin", "r0", 1)]
    return _write(tmp_path / "halves", _docs(n), queries, {"test": rows})


def _settings(tmp_path, **kw):
    kw.setdefault("gate__min_queries", 2)  # the synthetic corpora hold out a handful of feedback queries
    return Settings.load(data_dir=str(tmp_path / "state"), adaptation__rank=32, teacher__name="none", **kw)


@pytest.fixture(scope="module")
def train_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fbbench")
    return fb.run_feedback_benchmark(_settings(tmp), task=None, data_dir=[str(_train_corpus(tmp))], split="test", seeds=[0, 1],
                                     recipe=FeedbackConfig(), encoder=HashEncoder(128))


# -- splits, duplicates, strata ----------------------------------------------------------------


def test_train_split_strata_and_duplicates(tmp_path):
    src = load_source(None, str(_train_corpus(tmp_path)))
    assert src.kind == "train"
    d = fb.feedback_split(src, 0)
    assert set(d.stratum("seen")) == {f"s{j}" for j in range(N_SEEN)}
    assert set(d.stratum("never_seen")) == {f"n{j}" for j in range(N_FB, N_FB + N_NEW)}
    assert sorted(d.stratum("all")) == sorted(d.stratum("seen") + d.stratum("never_seen"))
    # the TRAIN twin of test query s0 is dropped from the feedback (test stays whole), counted
    assert "dup" not in d.feedback_queries and len(d.eval_queries) == N_SEEN + N_NEW
    assert d.protocol["n_dropped_exact_duplicates"] == 1 and d.protocol["dropped_from"] == "feedback"
    assert d.seen_docs == {f"r{j}" for j in range(N_FB)}  # grade-0 distractors are not "seen relevant"
    # qrels only, never metadata: 2 judgments per feedback query, grades as in the qrels file
    rows = d.feedback_rows(3)
    assert len(rows) == 2 * N_FB and {r["source"] for r in rows} == {"qrels"}
    assert {(r["doc_id"], r["relevance"]) for r in rows if r["query"] == qtext(5)} == {("r5", 2), ("x5", 0)}
    assert SECRET not in json.dumps(rows)


def test_halves_drop_evaluation_duplicates_of_feedback_queries(tmp_path):
    src = load_source(None, str(_half_corpus(tmp_path)))
    assert src.kind == "half"
    split_seeds, together_seeds = [], []
    for seed in range(12):
        d = fb.feedback_split(src, seed)
        assert not set(d.eval_queries) & set(d.feedback_queries)
        fb_norm = {normalise(t) for t in d.feedback_queries.values()}
        assert not any(normalise(t) in fb_norm for t in d.eval_queries.values())
        p = d.protocol
        assert p["dropped_from"] == "evaluation"
        if ("q0" in d.feedback_queries) != ("twin" in d.feedback_queries):  # the twins fell in different halves
            split_seeds.append(seed)
            assert p["n_dropped_exact_duplicates"] == 1 and not {"q0", "twin"} & set(d.eval_queries)
            assert len(d.eval_queries) + len(d.feedback_queries) == 40  # 41 judged, one dropped
        else:
            together_seeds.append(seed)
            assert p["n_dropped_exact_duplicates"] == 0 and len(d.eval_queries) + len(d.feedback_queries) == 41
    assert split_seeds and together_seeds


def test_seeds_change_which_queries_are_feedback_and_are_deterministic(tmp_path):
    src = load_source(None, str(_half_corpus(tmp_path)))
    a, a2, b = fb.feedback_split(src, 0), fb.feedback_split(src, 0), fb.feedback_split(src, 1)
    assert a.feedback_queries == a2.feedback_queries and a.eval_queries == a2.eval_queries
    assert set(a.feedback_queries) != set(b.feedback_queries)
    assert 15 <= len(a.feedback_queries) <= 25  # about half


def test_feedback_hold_out_salt_varies_and_default_is_unchanged():
    keys = [query_key(qtext(j)) for j in range(200)]
    tr, held = split_feedback(keys, 0.2)
    assert {keys[i] for i in held} == {k for k in keys if is_held_out(k, 0.2)}  # no salt: the fixed assignment
    np.testing.assert_array_equal(held, split_held_out(keys, 0.2)[1])
    h0, h1 = (set(split_feedback(keys, 0.2, s)[1].tolist()) for s in (0, 1))
    assert h0 != h1 and h0 != set(held.tolist())
    assert set(split_feedback(keys, 0.2, 1)[1].tolist()) == h1  # deterministic per salt
    assert 20 <= len(h0) <= 60


def test_runner_passes_split_seed_to_the_gate(tmp_path):
    from antigravity import AntigravityEngine
    from tests.test_feedback_training import corpus, planted_rows

    e = AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(128), store__location=":memory:", teacher__name="none", adaptation__rank=16)
    try:
        e.ingest(corpus())
        e.feedback_batch(planted_rows())
        cfg = FeedbackConfig(epochs=1)
        r0, r1, rn = (e.train_on_feedback(alpha=1.0, split_seed=s, config=cfg) for s in (0, 1, None))
        assert r0.metrics["split_seed"] == 0 and rn.metrics["split_seed"] is None
        assert set(r0.metrics["held_out_keys"]) != set(r1.metrics["held_out_keys"])
        assert set(rn.metrics["held_out_keys"]) == {k for k in rn.metrics["held_out_keys"] + rn.metrics["train_keys"] if is_held_out(k, 0.2)}
        with pytest.raises(ConfigurationError, match="seed"):
            e.train_on_feedback(alpha=1.0, split_seed=-1)
    finally:
        e.close()


def test_prior_boosts_only_seen_documents():
    run = {"q": {"a": 0.50, "b": 0.45, "c": 0.30}}
    out = fb.boosted_run(run, {"b", "z"}, 0.1)
    assert out == {"q": {"a": 0.50, "b": pytest.approx(0.55), "c": 0.30}}


# -- the whole run -----------------------------------------------------------------------------


def test_rows_strata_and_served_engine(train_result):
    r = train_result
    assert r["alpha"] == 1.0 and r["headline_stratum"] == "never_seen" and r["seeds"] == [0, 1]
    c = r["corpora"]["withtrain"]
    assert list(c["rows"]) == ["frozen", "prior", "adapted", "candidate"]
    for p in c["protocol_per_seed"]:
        assert (p["n_eval_seen"], p["n_eval_never_seen"], p["n_feedback_queries"], p["n_dropped_exact_duplicates"]) == (N_SEEN, N_NEW, N_FB, 1)
    frozen, prior, adapted, cand = (c["rows"][k] for k in ("frozen", "prior", "adapted", "candidate"))
    for row in c["rows"].values():
        assert set(row["per_query_ndcg@10"]) == {"0", "1"} and set(row["strata"]) == {"all", "seen", "never_seen"}
        assert row["strata"]["seen"]["n_queries"] == N_SEEN and row["strata"]["never_seen"]["n_queries"] == N_NEW
    # the prior can only move queries whose relevant document was judged: never-seen queries lose or stay
    for sd in ("0", "1"):
        for q in (f"n{j}" for j in range(N_FB, N_FB + N_NEW)):
            assert prior["per_query_ndcg@10"][sd][q] <= frozen["per_query_ndcg@10"][sd][q] + 1e-9
    assert prior["strata"]["seen"]["delta"] > 0
    # adapted = what the engine serves: the candidate when promoted, else the frozen student
    for d in c["decisions"]:
        sd = str(d["seed"])
        served = cand if d["promoted"] else frozen
        assert adapted["per_query_ndcg@10"][sd] == served["per_query_ndcg@10"][sd], d["reason"]
    assert any(d["promoted"] for d in c["decisions"])  # the planted pattern is learnable
    # ... and it generalises to items no feedback judged
    assert adapted["strata"]["never_seen"]["delta"] > 0.05
    assert SECRET not in json.dumps(fb_strip(r))


def test_a_rejected_candidate_is_not_what_the_adapted_row_scores(tmp_path):
    """Noise feedback: the gate rejects on every seed, so the served (adapted) row is the frozen
    student exactly, while the candidate row is scored too (and differs)."""
    r = fb.run_feedback_benchmark(_settings(tmp_path), task=None, data_dir=[str(_train_corpus(tmp_path, noise=True))], split="test", seeds=[0, 1],
                                  recipe=FeedbackConfig(), encoder=HashEncoder(128))
    c = r["corpora"]["noisy"]
    assert [d["promoted"] for d in c["decisions"]] == [False, False] and all(d["trained"] for d in c["decisions"])
    assert all(d["reason"].startswith("rejected: feedback_ndcg@10") for d in c["decisions"])
    frozen, adapted, cand = (c["rows"][k]["per_query_ndcg@10"] for k in ("frozen", "adapted", "candidate"))
    assert adapted == frozen and cand != frozen
    assert c["rows"]["adapted"]["strata"]["all"]["delta"] == 0.0 and c["rows"]["adapted"]["strata"]["all"]["paired"]["p"] == 1.0
    assert r["summary"]["gate"] == {"n": 2, "trained": 2, "promoted": 0, "scored": 2, "correct": sum(d["correct"] for d in c["decisions"])}


def fb_strip(r):
    from antigravity.harness.benchmark import strip_private

    return strip_private(r)


def test_holm_is_applied_across_rows_strata_and_corpora(train_result):
    c = train_result["corpora"]["withtrain"]
    slots = [(name, st, row["strata"][st]["paired"]) for name, row in c["rows"].items() if name != "frozen" for st in ("all", "seen", "never_seen")]
    assert train_result["holm_family_size"] == len(slots) == 9
    expected = holm([s["p"] for _, _, s in slots])
    for (_, _, slot), ph in zip(slots, expected):
        assert slot["p_holm"] == pytest.approx(ph) and slot["p_holm"] >= slot["p"]
    assert "p_holm" not in c["rows"]["frozen"]["strata"]["all"].get("paired", {})
    # std is the sample std over seeds
    row = c["rows"]["adapted"]["strata"]["never_seen"]
    per = [np.mean([c["rows"]["adapted"]["per_query_ndcg@10"][sd][q] for q in (f"n{j}" for j in range(N_FB, N_FB + N_NEW))]) for sd in ("0", "1")]
    assert row["std"]["ndcg@10"] == pytest.approx(float(np.std(per, ddof=1)))


def test_alpha_defaults_to_one_unless_set_and_needs_a_teacher_below_one(tmp_path):
    assert fb.feedback_alpha(Settings.load()) == 1.0  # the settings default 0.5 is not "set"
    assert fb.feedback_alpha(Settings.load(feedback__alpha=0.3)) == 0.3
    with pytest.raises(ConfigurationError, match="needs a teacher"):
        fb.run_feedback_benchmark(_settings(tmp_path, feedback__alpha=0.5), task=None, data_dir=[str(_half_corpus(tmp_path))], split="test", seeds=[0], encoder=HashEncoder(32))


def test_bad_feedback_kind_and_corpus_without_judgments(tmp_path):
    with pytest.raises(ConfigurationError, match="not available"):
        fb.validate_feedback_kind("thumbs")
    assert fb.validate_feedback_kind("clicks") == "clicks"
    d = _write(tmp_path / "nojudged", _docs(4), [{"_id": "q0", "text": "x"}], {"test": []})
    with pytest.raises(ConfigurationError, match="no test qrels"):
        fb.run_feedback_benchmark(_settings(tmp_path), task=None, data_dir=[str(d)], split="test", seeds=[0], encoder=HashEncoder(32))


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_feedback_train_writes_json_and_table(tmp_path, monkeypatch):
    from antigravity.cli import app

    monkeypatch.setenv("ANTIGRAVITY_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ANTIGRAVITY_TEACHER__NAME", "none")
    monkeypatch.setattr(fb, "student_encoder", lambda settings: HashEncoder(64))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["benchmark", "--feedback", "train", "--data-dir", str(_half_corpus(tmp_path)), "--seeds", "0,1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    c = r["corpora"]["halves"]
    assert r["protocol"] == "feedback" and r["recipe"] == vars(fb.benchmark_recipe()) and c["split_kind"] == "half"
    assert [p["seed"] for p in c["protocol_per_seed"]] == [0, 1]
    assert c["protocol_per_seed"][0]["feedback_query_ids"] != c["protocol_per_seed"][1]["feedback_query_ids"]
    assert "never_seen (headline)" in res.output and "prior" in res.output


@pytest.mark.parametrize("args,match", [
    (["--feedback", "views"], "not available; choose from train, clicks"),
    (["--feedback", "train", "--modes", "all"], "feedback protocol only: remove --modes"),
    (["--feedback", "train", "--cross-fit"], "feedback protocol only: remove --cross-fit"),
])
def test_cli_feedback_errors_are_one_line(args, match):
    res = _run("benchmark", *args)
    assert res.returncode == 2, res.stderr
    assert match in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_feedback_clicks_stores_simulated_clicks_on_the_frozen_top10_seeded(tmp_path, monkeypatch):
    """``--feedback clicks``: the rows stored are click rows (source click, a rank 1..10 of the
    frozen ranking, relevance 1), simulated from the feedback qrels, the same for the same seed
    (seed 0 run again on its own: a seed may not repeat within one run)."""
    stored = []
    real = fb.simulated_click_rows

    def spy(engine, data, seed):
        rows = real(engine, data, seed)
        shown = {data.feedback_queries[q]: [h.doc_id for h in hs] for q, hs in
                 zip(sorted(data.feedback_queries), engine.search_batch([data.feedback_queries[q] for q in sorted(data.feedback_queries)], k=10, record=False))}
        stored.append((seed, rows, shown, data))
        return rows

    monkeypatch.setattr(fb, "simulated_click_rows", spy)
    corpus = str(_half_corpus(tmp_path))
    r = fb.run_feedback_benchmark(_settings(tmp_path), task=None, data_dir=[corpus], split="test", seeds=[0, 1], feedback="clicks", encoder=HashEncoder(32))
    fb.run_feedback_benchmark(_settings(tmp_path), task=None, data_dir=[corpus], split="test", seeds=[0], feedback="clicks", encoder=HashEncoder(32))
    assert r["feedback"] == "clicks" and r["click_model"] == fb.CLICK_MODEL and r["propensity"] == "none"
    (s0, rows0, shown0, data0), (s1, rows1, _, _), (s0b, rows0b, _, _) = stored
    assert (s0, s1, s0b) == (0, 1, 0)
    assert rows0 and rows0 == rows0b and rows0 != rows1  # seeded
    for row in rows0:
        assert row["source"] == "click" and row["relevance"] == 1
        assert shown0[row["query"]][row["rank"] - 1] == row["doc_id"]  # clicked where the frozen student showed it
    relevant = {(data0.feedback_queries[q], d) for q, ds in data0.feedback_qrels.items() for d, g in ds.items() if g > 0}
    shown_rel = sum(1 for qt, ds in shown0.items() for d in ds if (qt, d) in relevant)
    assert sum((row["query"], row["doc_id"]) in relevant for row in rows0) >= 1 and shown_rel >= 1
    assert all(d["n_feedback_events"] == len(rows) for d, (_, rows, _, _) in zip(r["corpora"]["halves"]["decisions"], stored))
