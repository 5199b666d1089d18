"""The rules, one module per concern, combined by ckptfix.analysis.checker."""
