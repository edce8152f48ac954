# One image for the detector, the simulator and training (CPU TensorFlow).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=3

WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY producer ./producer
COPY training ./training
COPY kafka_local ./kafka_local
# /models belongs to the app user: a named volume mounted there starts as a copy of it
# (owner included), so training can write bundles into it without root.
RUN pip install '.[train]' && useradd --create-home --uid 10001 app \
    && mkdir -p /models && chown 10001:10001 /models
USER app

EXPOSE 9108
ENTRYPOINT []
CMD ["detector", "--help"]
