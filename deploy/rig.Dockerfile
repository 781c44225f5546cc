# The rig, for a Raspberry Pi (arm64): no torch, ever.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libasound2 libjack-jackd2-0 gcc \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NEUROJAM_CONFIG_DIR=/app/configs
COPY pyproject.toml README.md ./
COPY rig rig
COPY bridge bridge
COPY neurojam neurojam
COPY configs configs
RUN mkdir brain && touch brain/__init__.py && pip install --no-cache-dir ".[rig,audio]"
CMD ["neurojam", "rig", "--config", "pi"]
