# One image for the detector, the simulator and training (CPU TensorFlow).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY producer ./producer
COPY training ./training
COPY kafka_local ./kafka_local
RUN pip install '.[train]' && useradd --create-home --uid 10001 app
USER app

EXPOSE 9108
ENTRYPOINT []
CMD ["detector", "--help"]
