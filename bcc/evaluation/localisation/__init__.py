"""Table 4 and Fig. 3: do the Grad-CAM maps localise the dermatologists' pattern masks? (docs/table4.md)

The steps, in the order ``table4.mask_report`` runs them:

* ``records`` — per test image, the map of each output's *predicted class* and the uninformed maps,
  each scored against the output's mask on every background (one record per map × mask × background);
* ``baselines`` — the uninformed maps a model must beat: image centre, whole lesion, another image's mask;
* ``statistics`` — one map against one mask: densities, gap, pixel AUC, z-test, placement test, and the
  multiple-testing corrections over images;
* ``quantus_metrics`` — relevance mass and rank accuracy, pointing game (Quantus);
* ``faithfulness`` — the deletion tests: counterfactual twins and ROAD;
* ``tables`` — the CSV tables from the records (statistics, model − baseline, per head, deletion tests);
* ``figure3`` — the paper's Fig. 3 panels at the median, best and worst map;
* ``table4`` — runs the steps for trained runs, writes the files, and ``describe`` says it in words.
"""

__all__ = ["baselines", "faithfulness", "figure3", "quantus_metrics", "records", "statistics", "table4",
           "tables"]
