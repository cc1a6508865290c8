# The txmon image: the `txmon` command and nothing else (no dev extras, no data, no models).
# docker-compose.yml runs every service of a deployment from it; docs/deploy.md explains them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the CPU index: the project pins torch==2.13.0, and resolving that pin on PyPI
# pulls several GB of CUDA wheels instead. Its own layer, so a code change does not download it again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
# README.md: pyproject.toml names it as the package's readme, so the build reads it.
COPY pyproject.toml README.md ./
COPY txmon ./txmon
COPY producer ./producer
COPY stream_app ./stream_app
COPY model_store ./model_store
COPY replay ./replay
RUN pip install .

# Not root. The mount points exist in the image and belong to txmon, so Docker gives fresh named
# volumes mounted there the same owner and the jobs can write to them.
RUN useradd --create-home --uid 10001 txmon \
    && mkdir -p /data /models /reports \
    && chown txmon:txmon /data /models /reports
USER txmon
WORKDIR /home/txmon
ENV TXMON_DATA_DIR=/data \
    TXMON_MODEL_DIR=/models \
    TXMON_CACHE_DIR=/data/.cache

EXPOSE 6066
ENTRYPOINT ["txmon"]
CMD ["--help"]
