"""Exercise 8: an experiment. The learner's train_one and run_experiment run on a small MNIST
subset; the checker looks at the table's shape, at properties any correct run has (the first
loss of each initialisation, clipping changing the runs it should), and at the written findings."""

from __future__ import annotations

import numpy as np

from .common import CheckFailed, call, load_mnist_subset

TITLE = "an experiment: He init x 0.1 and gradient clipping, with and without"
NAMES = ("CONFIGS", "train_one", "run_experiment", "table", "FINDINGS")
KEYS = ("init_scale", "clip_value", "pixel_scale", "first_loss", "final_loss", "test_accuracy", "diverged", "losses")
WANTED = {(init, clip, pixels) for init in (1.0, 0.1) for clip in (None, 1.0) for pixels in (1.0, 255.0)}


def check(module, report, train=True):
    configs = {tuple(config) for config in module.CONFIGS}
    if configs != WANTED:
        raise CheckFailed(f"CONFIGS should hold the 8 combinations of init_scale (1.0, 0.1), clip_value (None, 1.0) and pixel_scale (1.0, 255.0); got {sorted(configs, key=str)}")
    findings = " ".join(str(module.FINDINGS).split())
    if len(findings) < 300 or "NotImplemented" in findings or "write" in findings.lower()[:40]:
        raise CheckFailed("FINDINGS should say, in a paragraph of your own (300 characters or more), what the table shows and why", "not-implemented")
    report.ok(f"CONFIGS has the 8 combinations; FINDINGS has {len(findings)} characters")
    if not train:
        report.note("--no-train: the experiment itself is not run")
        return

    data = load_mnist_subset(2_000, 500)
    rows = call(module, "run_experiment(data) on 2,000 images", module.run_experiment, data)
    if not isinstance(rows, list) or len(rows) != 8 or not all(isinstance(row, dict) for row in rows):
        raise CheckFailed("run_experiment should return a list of 8 dicts, one per configuration")
    for row in rows:
        missing = [key for key in KEYS if key not in row]
        if missing:
            raise CheckFailed(f"a row of run_experiment lacks {missing}; each row has {', '.join(KEYS)}")
        if not 0 <= row["test_accuracy"] <= 1 or not len(row["losses"]) or row["first_loss"] != row["losses"][0]:
            raise CheckFailed(f"row {({k: row[k] for k in KEYS[:3]})}: test_accuracy must be in [0, 1], losses a non-empty list starting with first_loss")
    by_config = {(row["init_scale"], row["clip_value"], row["pixel_scale"]): row for row in rows}
    if set(by_config) != WANTED:
        raise CheckFailed("run_experiment's rows should cover the 8 CONFIGS, once each")
    report.ok("run_experiment: 8 rows, one per configuration, each with " + ", ".join(KEYS))

    small_start = by_config[(0.1, None, 1.0)]["first_loss"]
    if abs(small_start - np.log(10)) > 0.05:
        raise CheckFailed(f"with He x 0.1 and pixels in [0, 1] the first loss should be ln 10 = 2.303 (the logits start tiny); got {small_start:.4g}: is init_scale passed to the model?")
    big_start = by_config[(1.0, None, 255.0)]["first_loss"]
    if not big_start > 20:
        raise CheckFailed(f"with He x 1 and pixels at 0..255 the first loss should be huge (about 200); got {big_start:.4g}: are the images multiplied by pixel_scale?")
    if by_config[(1.0, 1.0, 255.0)]["losses"][:20] == by_config[(1.0, None, 255.0)]["losses"][:20]:
        raise CheckFailed("clipping changed nothing on the 0..255 run, where the gradients are huge: is clip_value passed to the optimizer?")
    healthy = by_config[(1.0, None, 1.0)]["test_accuracy"]
    if healthy < 0.6:
        raise CheckFailed(f"the healthy run (He x 1, no clipping, pixels in [0, 1]) reached only {100 * healthy:.1f}% on 2,000 images; expected more than 60%")
    report.ok(f"first losses: {small_start:.3f} with He x 0.1, {big_start:.0f} with He x 1 on 0..255 pixels; clipping changes the runs it should")
    text = call(module, "table(rows)", module.table, rows)
    for line in str(text).splitlines():
        report.note(line)
