"""bcc: multitask BCC diagnosis with dual explanation (arXiv 2407.00104)."""
