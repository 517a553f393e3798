"""Cross-fold evaluation of finished runs (``python -m bcc.evaluate``): the paper's Tables 3, 4 and 5 and more.

One concept per module, the numbers from scikit-learn and torchmetrics (``metrics``):

* ``pipeline`` — the whole evaluation of an experiment, from ``conf/eval.yaml``; ``report`` renders it
  (report.md, its list of files read from the folder), ``wandb_summary`` logs it (the W&B summary run),
  ``markdown`` its tables, ``figures`` the ROC, confusion and per-pattern figures;
* ``runs`` — finding an experiment's runs and checking they are complete and comparable;
* ``metrics`` — recall, specificity, precision, accuracy and ROC AUC (scikit-learn), used by every table;
* ``clinical_metrics`` — Table 3 (binary, per-pattern, clinically-inspired rows; mean and variance over folds);
* ``calibration`` — ECE and reliability, the validation thresholds and scalings training fitted,
  the out-of-fold triage operating point;
* ``within_bcc`` — do the pattern heads know the patterns, beyond "this is a BCC"?;
* ``linear_probe`` — what the frozen features know (the ceiling of stage 3's linear heads);
* ``localisation/`` — Table 4 and Fig. 3: Grad-CAM maps against the pattern masks (its own ``__init__``);
* ``lesion_focus`` — Grad-CAM mass on whole-lesion masks of real pictures;
* ``sources`` — is the AUROC about BCC or about the dataset a picture came from?;
* ``seeds`` — the seed-to-seed spread of a run;
* ``complexity`` — Table 5 (parameters, MACs, size, CPU latency);
* ``agreement`` — the dataset section: prevalence, inter-rater agreement, rater quality;
* ``external`` — a trained experiment's fold models scored on another dataset.
"""

__all__ = ["agreement", "calibration", "clinical_metrics", "complexity", "controls", "external", "figures",
           "lesion_focus", "linear_probe", "localisation", "markdown", "pipeline", "report", "runs", "seeds",
           "sources", "wandb_summary", "within_bcc"]
