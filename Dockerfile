# One image for the API and the worker; the command picks the role.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    LORAPLEX_DATA_DIR=/data

WORKDIR /app

# torch first and pinned, so pip takes the CPU wheel (use a CUDA base image and wheel for GPU
# workers).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY migrations ./migrations
RUN pip install .

VOLUME ["/data"]
EXPOSE 8000

# The embedded deployment by default; docker-compose.yml runs `api` and `worker` instead.
CMD ["loraplex", "up", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
