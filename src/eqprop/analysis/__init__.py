"""Analysis tools: gradient agreement with the reference (theorem checks)."""

from eqprop.analysis.gradcheck import gradcheck

__all__ = ["gradcheck"]
