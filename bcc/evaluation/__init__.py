"""Cross-fold evaluation of finished runs (`python -m bcc.evaluate`): the paper's Tables 3 and 5 and more.

One concept per module: ``runs`` (finding predictions, completeness), ``clinical_metrics`` (Table 3),
``complexity`` (Table 5), ``calibration`` (ECE, reliability, triage operating point), ``figures``
(ROC, confusion matrices, per-pattern bars), ``report`` (report.md and the W&B summary run).
"""
