"""Operator explanations of inspection results: a deterministic sentence from the measured facts,
and optionally a small language model (facts in the prompt, plus soft tokens from the anomaly and
defect-kind maps through a trained adapter), validated against the facts before display and run
asynchronously so inspection never waits."""

from inspect_app.explain.interface import Explainer, Explanation
from inspect_app.explain.service import ExplainerService
from inspect_app.explain.template import template_explanation

__all__ = ["Explainer", "ExplainerService", "Explanation", "template_explanation"]
