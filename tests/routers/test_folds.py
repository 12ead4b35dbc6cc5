from __future__ import annotations

from collections import defaultdict

from routers.dataset import Example
from routers.folds import dataset_folds, dataset_of


def test_templates_domains_and_collections_fold_into_their_dataset() -> None:
    assert dataset_of("t0/xsum_DOC_tldr") == dataset_of("t0/xsum_read_below_DOC_write_abstract") == "xsum"
    assert dataset_of("t0/adversarial_qa_dbert_based_on") == dataset_of("t0/adversarial_qa_droberta_generate_question")
    assert dataset_of("crossner/music") == dataset_of("crossner/politics")
    assert dataset_of("ni1/subtask039_qasc_find_overlapping_words") == dataset_of("t0/qasc_is_correct_1")
    assert dataset_of("ni1/subtask022_cosmosqa_passage_inappropriate_binary") == dataset_of("t0/cosmos_qa_no_prompt_id")
    assert dataset_of("sni/task137_detoxifying-lms_classification_toxicity") == dataset_of(
        "sni/task140_detoxifying-lms_classification_style"
    )
    assert dataset_of("bbh/hyperbaton") != dataset_of("bbh/formal_fallacies")  # unrelated tasks of one collection
    assert dataset_of("mbppplus/Mbpp/11") == dataset_of("mbppplus/Mbpp/12")


def test_every_dataset_lies_in_one_fold_and_every_label_in_several() -> None:
    examples = [
        Example(f"{label} prompt {n}", label, f"{label}-set-{d}/template-{n % 3}")
        for label in ("code", "math", "qa")
        for d in range(6)
        for n in range(10 + d)
    ]
    folds = dataset_folds(examples, 3)
    assert sorted(i for fold in folds for i in fold) == list(range(len(examples)))
    fold_of: dict[str, set[int]] = defaultdict(set)
    labels_of: dict[int, set[str]] = defaultdict(set)
    for number, fold in enumerate(folds):
        for i in fold:
            fold_of[dataset_of(examples[i].group)].add(number)
            labels_of[number].add(examples[i].label)
    assert all(len(numbers) == 1 for numbers in fold_of.values())
    assert all(labels == {"code", "math", "qa"} for labels in labels_of.values())
