"""lm-eval's own task definitions pointed at the offline arrow files our scorer reads (tests only)."""

from __future__ import annotations

from pathlib import Path

from shapprune.evaluation.zero_shot import task_dir

LM_EVAL_YAML = {
    "piqa": "piqa/piqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
}
OVERRIDES = {"boolq": 'doc_to_target: "{{answer|int}}"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n'}


def local_task_configs(directory: Path) -> list[str]:
    """lm-eval's own task YAMLs, each included by one that only points it at our local arrow file."""
    import lm_eval

    tasks = Path(lm_eval.__file__).parent / "tasks"
    for name, source in LM_EVAL_YAML.items():
        arrow = next(task_dir(name).glob("*.arrow"))
        (directory / f"ours_{name}.yaml").write_text(
            f"include: {tasks / source}\ntask: ours_{name}\ntag: []\ndataset_path: arrow\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    validation: {arrow}\n"
            "training_split: null\nvalidation_split: validation\ntest_split: null\n" + OVERRIDES.get(name, "")
        )
    return [f"ours_{name}" for name in LM_EVAL_YAML]
