# The DAIK image: the API, the workers, beat and the migrations all run from it (docker-compose.yml).
#   docker build -t daik:cpu .                                                    # CPU torch
#   docker build -t daik:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# TORCH_INDEX_URL picks the torch build (PyTorch's wheel index of one CPU or CUDA variant);
# TORCH_VERSION the release.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the chosen index, so the project's open `torch>=2.3` range pulls nothing larger
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY pyproject.toml setup.py README.md LICENSE ./
COPY daik_core daik_core
COPY service service
COPY worker worker
COPY migrations migrations
# editable: `daik db upgrade` finds migrations/ beside the service package (a wheel ships it as service/migrations)
RUN pip install -e ".[service,worker]"

RUN useradd --create-home --uid 1000 daik \
    && mkdir -p /data /artifacts /var/lib/daik \
    && chown daik:daik /data /artifacts /var/lib/daik
USER daik
ENV DAIK_HOME=/var/lib/daik DAIK_DATA_ROOT=/data DAIK_ARTIFACT_ROOT=/artifacts

EXPOSE 8000
CMD ["daik", "api", "--host", "0.0.0.0", "--port", "8000"]
