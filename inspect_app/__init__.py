"""inspect_app: learn good parts from normal images, flag and explain defects."""

__version__ = "0.1.0"

# Bumped whenever a saved profile's layout or meaning changes; older profiles are refused.
PROFILE_FORMAT = 5

__all__ = ["Inspector", "InspectionResult", "__version__", "PROFILE_FORMAT"]


def __getattr__(name: str):
    # Lazy so that `import inspect_app` (and the CLI's --help) does not import torch.
    if name == "Inspector":
        from inspect_app.inspector import Inspector

        return Inspector
    if name == "InspectionResult":
        from inspect_app.results import InspectionResult

        return InspectionResult
    raise AttributeError(name)
