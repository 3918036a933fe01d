"""A product's own defect kinds, taught from a few labelled parts without a refit.

The numpy side (prototypes, the naming bar) is ``post_processing.kinds``; here are the parts that
need a fitted Inspector: ``learning`` (labelled parts to prototypes), ``evaluation`` (kind-shot
figures of ``inspect-app eval``) and ``commands`` (``inspect-app kinds add/list/remove``).
"""
