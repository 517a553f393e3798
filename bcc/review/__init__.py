"""The review loop: a dermatologist's verdicts on a triage worklist, recorded in a database and exported as
a rater of ``annotations.csv`` (``python -m bcc.review``; docs/deploy.md)."""

__all__ = ["accounts", "app", "db", "export", "worklists"]
