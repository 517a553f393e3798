"""Triage of new images (docs/deploy.md): scorers, thresholds, the worklist and its report, ONNX export, the
fold ensemble and its guarantee."""

__all__ = ["ensemble", "guarantee", "guarantee_calibration", "int8", "maps_js", "model_card", "onnx_export",
           "onnx_model", "option_checks", "report_html", "scorers", "thresholds", "triage"]
