"""The recipe for the shipped task router (``routers/models/taskmix``), run by a maintainer.

    bash deploy/setup.sh dev                 # .venv with the finetune extra: torch 2.13.0 (CPU), transformers
    .venv/bin/python -m routers.recipes.taskmix cross-validate --work /tmp/taskmix   # ~40 min on 2 cores
    .venv/bin/python -m routers.recipes.taskmix build --work /tmp/taskmix             # ~20 min on 2 cores
    .venv/bin/python -m routers.recipes.taskmix templates --work /tmp/taskmix         # ~8 min, optional
    .venv/bin/python bench/router_ldo.py --work /tmp/taskmix                          # the report, ~10 min

A smaller student: ``cross-validate --layers 3 --work /tmp/taskmix-3`` (~18 min), reported beside
the six-layer model by ``bench/router_ldo.py --work /tmp/taskmix --compare /tmp/taskmix-3``; it is
shipped only if it holds macro-F1 within a point (it did not: 0.662 against 0.771).

``cross-validate`` fine-tunes once per leave-datasets-out fold (5 folds over ``train.jsonl``,
``extra_train.jsonl`` and ``extra2_train.jsonl``, whole datasets held out) and keeps each held-out
fold's logits and pooled embeddings (``bench/few_shot.py`` measures correction by example on them).
``templates`` fine-tunes once more without a fifth of the templates (the secondary figure).
``build`` fits the temperature and the abstain threshold on those out-of-fold logits, fine-tunes
on everything, exports the int8 ONNX model and checks it against torch on a fixed set of prompts.

Non-commercial sources (Code Alpaca, ASDiv, DialogSum, AESLC) are never trained on; they are
scored when their fold is held out. Deterministic for a seed with the same thread count.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from routers.calibration import choose_abstain_threshold, expected_calibration_error, fit_temperature, softmax
from routers.dataset import Example, load_examples
from routers.finetune import FineTuneSettings, TaskModel, export, fine_tune, logits_of, pooled_of, tokenizer_for
from routers.folds import dataset_folds
from routers.training import split_by_group

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["classification", "code", "creative", "extraction", "math", "qa", "summarization"]
NON_COMMERCIAL = ("codealpaca/", "asdiv", "dialogsum", "aeslc")
FOLDS = 5
CV_STEPS = 450
DATASET_POWER = 0.0
"""Every dataset of a label drawn alike: 0.787 leave-datasets-out against 0.771 for the square root
of its size (``bench/results/router-ldo.md``), better on four folds of five."""
PARITY_PROMPTS = 256
EXTRA2_SOURCES = {
    "spider/dev": "SQL for a supplied schema; taoyds/spider, Apache-2.0 (Spider data CC BY-SA 4.0)",
    "sede": "SQL requests with their tables; hirupert/sede, Apache-2.0",
    "ehrsql/mimic_iii, ehrsql/eicu": "SQL over MIMIC-III/eICU schemas; glee4810/EHRSQL, CC BY 4.0",
    "tatqa/arithmetic": "math over annual-report tables; NExTplusplus/TAT-QA, CC BY 4.0",
    "tatqa/span": "extraction from the same reports; NExTplusplus/TAT-QA, CC BY 4.0",
    "mathqa": "multiple-choice word problems; AGI-Edgerunners/LLM-Adapters copy, ODC-By (MathQA Apache-2.0)",
    "stackexchange/*": "question bodies condensed to a title; Stack Exchange dumps, CC BY-SA (no licence file)",
    "liveqa-med": "health questions to one short one; abachaa/LiveQA_MedicalTask_TREC2017, no licence file",
    "tabfact": "statement entailed or refuted by a table; wenhuchen/Table-Fact-Checking, MIT (TabFact CC BY 4.0)",
    "fairytaleqa/answering": "extraction from a story section; uci-soe/FairytaleQAData, Apache-2.0",
    "fairytaleqa/question-writing": "creative: write a question about a section; same source, Apache-2.0",
    "hellaswag": "qa: commonsense sentence completion; klosax/hellaswag_text_data copy, HellaSwag MIT",
    "piqa": "qa: physical commonsense choice; ybisk/ybisk.github.io, AFL-3.0",
    "copa": "qa: Balanced COPA (no licence file; COPA BSD-2-Clause)",
    "triviaqa": "qa: trivia; NoviScl/Quizbowl copy, TriviaQA Apache-2.0",
    "webquestions": "qa: factoid questions; brmson/dataset-factoid-webquestions, CC BY 4.0",
    "persona-chat/synthetic": "creative: role-play from a persona; google-research-datasets, CC BY 4.0",
    "clariq": "creative: write a clarifying question; ClariQ, no licence file",
    "canard": "creative: rewrite a conversation's last question self-contained; aagohary/canard, no licence file",
}
"""``extra2_train.jsonl``'s sources (``../shared/datasets/README.md``): counter-examples for the task
families the router confused, labelled per source by the brief's definitions. None is
non-commercial; those without a licence file are used as the shared data set ships them."""

log = logging.getLogger("turnout")


PASSAGE_QUESTIONS = (
    "t0/cosmos_qa_context_question_description_text",
    "t0/cosmos_qa_context_question_description_answer_id",
    "t0/cosmos_qa_context_description_question_text",
    "t0/cosmos_qa_context_description_question_answer_id",
    "t0/cosmos_qa_description_context_question_text",
    "t0/cosmos_qa_description_context_question_answer_id",
    "t0/cosmos_qa_no_prompt_id",
    "t0/dream_read_the_following_conversation_and_answer_the_question",
    "t0/dream_baseline",
    "t0/quartz_",
    "t0/ropes_",
    "t0/wiki_hop_original_choose_best_object_",
    "t0/wiki_hop_original_explain_relation",
    "t0/qasc_qa_with_separated_facts_",
)
"""Templates that ``train.jsonl`` labels ``qa`` but that ask about a passage, dialogue or facts the
prompt supplies: by the brief's definitions (and ``extra_train.jsonl``'s), reading comprehension
over a supplied passage is ``extraction``; ``qa`` is answering with no passage supplied."""
QUESTION_WRITING = ("t0/cosmos_qa_context_answer_to_question", "t0/commonsense_qa_answer_to_question")
"""Templates labelled ``qa`` that ask to *write* a question: ``creative`` by the brief."""


def by_the_brief(example: Example) -> Example:
    """The label the brief's definitions give a template; decided per template, never per row."""
    if example.label == "qa" and example.group.startswith(PASSAGE_QUESTIONS):
        return replace(example, label="extraction")
    if example.label == "qa" and example.group.startswith(QUESTION_WRITING):
        return replace(example, label="creative")
    return example


def is_commercial(example: Example) -> bool:
    return not example.group.startswith(NON_COMMERCIAL)


def taskmix(shared: Path) -> list[Example]:
    """Every labelled row of the shared task mix, in file order (the folds index into it),
    ``train.jsonl``'s templates labelled by the brief's definitions."""
    folder = shared / "datasets" / "taskmix"
    return (
        [by_the_brief(e) for e in load_examples(folder / "train.jsonl")]
        + load_examples(folder / "extra_train.jsonl")
        + load_examples(folder / "extra2_train.jsonl")
    )


def hand_written() -> list[Example]:
    return load_examples(ROOT / "routers" / "data" / "augment.jsonl")


def cross_validate(shared: Path, work: Path, settings: FineTuneSettings) -> None:
    rows = taskmix(shared)
    folds = dataset_folds(rows, FOLDS, seed=settings.seed)
    tokenizer = tokenizer_for(settings)
    work.mkdir(parents=True, exist_ok=True)
    (work / "settings.json").write_text(json.dumps(asdict(settings), indent=1) + "\n")
    for number, fold in enumerate(folds):
        done = work / f"fold-{number}.npy"
        if done.exists():
            continue
        held = set(fold)
        trained_on = [e for i, e in enumerate(rows) if i not in held and is_commercial(e)] + hand_written()
        started = time.monotonic()
        model = fine_tune(trained_on, LABELS, settings)
        held_prompts = [rows[i].prompt for i in fold]
        np.save(work / f"fold-{number}-pooled.npy", pooled_of(model, tokenizer, held_prompts).astype(np.float16))
        np.save(done, logits_of(model, tokenizer, held_prompts))
        log.info("fold %d: %d rows trained, %.0f s", number, len(trained_on), time.monotonic() - started)


def held_out_templates(shared: Path, work: Path, settings: FineTuneSettings) -> None:
    """The secondary figure: fine-tuned without a fifth of the templates, scored on them."""
    trained_on, held = templates_split(taskmix(shared))
    model = fine_tune(trained_on + hand_written(), LABELS, settings)
    np.save(work / "templates.npy", logits_of(model, tokenizer_for(settings), [e.prompt for e in held]))


def templates_split(rows: list[Example]) -> tuple[list[Example], list[Example]]:
    """``held_out_templates``' split of ``taskmix`` rows: those trained on, and the held-out fifth in the
    order of its logits.
    A source with a single template (most of ``extra_train.jsonl``) is one group, so part of the
    fifth is whole datasets: the secondary figure counts only the templates of datasets trained on."""
    trained_on, held = split_by_group([e for e in rows if is_commercial(e)], 0.2, seed=7)
    return trained_on, held


def settings_of(work: Path) -> FineTuneSettings:
    """The settings a cross-validation run used (for runs that predate the record, the defaults of
    that time: 450 steps, six layers, datasets weighted by the square root of their size)."""
    record = work / "settings.json"
    if not record.exists():
        return FineTuneSettings(steps=CV_STEPS, dataset_power=0.5, layers=6)
    return FineTuneSettings(**json.loads(record.read_text()))


def out_of_fold(shared: Path, work: Path, seed: int) -> tuple[list[Example], list[list[int]], np.ndarray]:
    """Rows, folds and the held-out logits of every row, from ``cross-validate``'s files."""
    rows = taskmix(shared)
    folds = dataset_folds(rows, FOLDS, seed=seed)
    return rows, folds, fold_logits(work, folds, len(rows))


def fold_logits(work: Path, folds: list[list[int]], rows: int) -> np.ndarray:
    """The held-out logits of every row, each fold's from its file, in row order."""
    logits = np.zeros((rows, len(LABELS)), dtype=np.float32)
    for number, fold in enumerate(folds):
        logits[fold] = np.load(work / f"fold-{number}.npy")
    return logits


def build(shared: Path, work: Path, out: Path, settings: FineTuneSettings) -> None:
    rows, _, logits = out_of_fold(shared, work, settings.seed)
    targets = np.array([LABELS.index(e.label) for e in rows])
    temperature = fit_temperature(logits, targets)
    calibrated = softmax(logits, temperature)
    threshold = choose_abstain_threshold(calibrated, targets)
    trained_on = [e for e in rows if is_commercial(e)] + hand_written()
    started = time.monotonic()
    model = fine_tune(trained_on, LABELS, settings)
    minutes = round((time.monotonic() - started) / 60, 1)
    facts = {
        "trained_on": len(trained_on),
        "fine_tune_minutes": minutes,
        "fitted_on": "out-of-fold logits of a 5-fold leave-datasets-out run",
        "ece_before": round(expected_calibration_error(softmax(logits), targets), 4),
        "ece_after": round(expected_calibration_error(calibrated, targets), 4),
    }
    export(model, out, LABELS, settings, temperature, threshold, facts)
    parity = check_parity(model, out, settings, [e.prompt for e in rows[:: max(1, len(rows) // PARITY_PROMPTS)]])
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(manifest | {"onnx_parity": parity}, indent=2) + "\n")
    log.info("built %s: %s", out, json.dumps(manifest | {"onnx_parity": parity}))


def check_parity(model: TaskModel, out: Path, settings: FineTuneSettings, prompts: list[str]) -> dict[str, float]:
    """How far the int8 ONNX model's probabilities are from torch's, and how often the top label agrees."""
    from routers.classifier import TaskClassifier

    manifest = json.loads((out / "manifest.json").read_text())
    torch_probabilities = softmax(logits_of(model, tokenizer_for(settings), prompts), manifest["temperature"])
    onnx_probabilities = TaskClassifier(out).scores(prompts)
    return {
        "prompts": len(prompts),
        "top_label_agreement": round(float(np.mean(torch_probabilities.argmax(1) == onnx_probabilities.argmax(1))), 4),
        "max_abs_difference": round(float(np.abs(torch_probabilities - onnx_probabilities).max()), 4),
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["cross-validate", "build", "templates"])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, required=True, help="where the out-of-fold logits are kept")
    parser.add_argument("--out", type=Path, default=ROOT / "routers" / "models" / "taskmix")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--layers", type=int, default=FineTuneSettings.layers, help="fewer for a smaller student")
    parser.add_argument("--dataset-power", type=float, default=DATASET_POWER)
    args = parser.parse_args()
    chosen = {"layers": args.layers, "dataset_power": args.dataset_power}
    if args.step == "cross-validate":
        cross_validate(args.shared, args.work, FineTuneSettings(steps=args.steps or CV_STEPS, **chosen))
    elif args.step == "templates":
        held_out_templates(args.shared, args.work, FineTuneSettings(steps=args.steps or CV_STEPS, **chosen))
    else:
        build(args.shared, args.work, args.out, FineTuneSettings(steps=args.steps or FineTuneSettings.steps, **chosen))


if __name__ == "__main__":
    main()
