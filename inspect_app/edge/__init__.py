"""Deploying a fitted product without torch: ``inspect-app export`` writes one graph (encoder,
decoders, map smoothing) with the post-processing settings and a manifest; the edge runtime
(``EdgeInspector``) runs it with OpenVINO or ONNX Runtime and the same numpy pre- and
post-processing as the torch path. Only ``graph``, ``export`` and ``accelerate`` import torch.
"""
